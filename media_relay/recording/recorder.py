"""A stream's recorder: segments cut on keyframes, sealed with a SHA-256, chained in a manifest.

Segments live in ``<root>/<yyyy>/<mm>/<dd>/<stream-id>/`` (the day the stream first started),
beside that stream's ``manifest.jsonl``. A stream that starts again (a publisher reconnecting
with the same grant) continues the same folder and manifest, with a gap entry between.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.recording.clock import StreamClock, ntp_seconds
from media_relay.recording.manifest import Manifest, sha256_file, utc_iso
from media_relay.recording.matroska import ClusterLost
from media_relay.recording.segment import SegmentWriter, TrackFormat

__all__ = ["EntryListener", "StreamRecorder", "stream_directory"]

EntryListener = Callable[[dict[str, Any], str, Path], None]
"""Told of each manifest entry the recorder wrote (a sealed segment or a gap), its line's hash and
the stream's folder."""

logger = logging.getLogger(__name__)

# Closing a segment, hashing it, fsync and the manifest append are disk work: they run here, off
# the event loop, so that one stream's rollover never delays another stream's frames. Each
# recorder's tasks run in the order given (see StreamRecorder._then).
_DISK = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recorder-disk")

MANIFEST_NAME = "manifest.jsonl"
MAX_PENDING_AUDIO = 250  # ~5 s of 20 ms Opus frames held until the first video keyframe
BATCH_SECONDS = 0.25
"""Frames are taken a quarter second (by their arrival) at a time, not one by one as they come:
bench/recording.py measured the recorder's CPU at well under the one-by-one figure, since the
code and data of the recorder and of the muxer then stay in the CPU's caches from one frame to the
next. A crash loses at most this much more than the segment's own half-second cluster
(matroska.CLUSTER_MS): well within the 1 s the archive promises (R2)."""
MAX_BATCH = 64
"""Nor more frames than this at a time, whatever their arrival times say (a second of 15 fps video
with 20 ms audio is 65)."""
_SEQUENCE_IN_NAME = re.compile(r"-(\d{5,})(?:\.recovered)?\.mkv$")


def stream_directory(root: Path, stream_id: str, now: datetime | None = None) -> Path:
    """Where a stream's segments go: its existing folder, else today's (UTC)."""
    existing = sorted(root.glob(f"*/*/*/{stream_id}/{MANIFEST_NAME}"))
    if existing:
        return existing[-1].parent
    day = (now or datetime.now(UTC)).astimezone(UTC)
    return root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / stream_id


class StreamRecorder:
    """Records one live stream. Feed it with :meth:`write`; :meth:`close` seals the last segment."""

    def __init__(
        self,
        *,
        root: Path,
        stream_id: str,
        tracks: dict[MediaKind, str],
        segment_seconds: float,
        fsync_seconds: float = 1.0,
        gap_reason: str = "publisher reconnected",
        on_entry: EntryListener | None = None,
        on_write_error: Callable[[str], None] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.directory = stream_directory(root, stream_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(self.directory / MANIFEST_NAME)
        self._segment_seconds = segment_seconds
        self._fsync_seconds = fsync_seconds
        self._formats = {kind: TrackFormat(kind, codec) for kind, codec in tracks.items()}
        self._writer: SegmentWriter | None = None
        self._segment_started_wall: datetime | None = None
        self._segment_started_mono = 0.0
        self._sequence = self._next_sequence()
        self.clock = StreamClock(epoch=self._epoch())
        self._last_pts: dict[MediaKind, float] = {}
        self._pending_audio: deque[EncodedFrame] = deque(maxlen=MAX_PENDING_AUDIO)
        self._arrived: list[EncodedFrame] = []
        """Frames given to :meth:`write` and not yet taken (see BATCH_SECONDS)."""
        self._last_sync = 0.0
        self.frames_written = 0
        self.frames_dropped = 0
        self.closed = False
        self._on_entry = on_entry
        self._on_write_error = on_write_error
        self._tail: Future[None] | None = None
        self._last_error_report = float("-inf")
        self._note_gap(gap_reason)

    # -- feeding -------------------------------------------------------------------------------

    def write(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        self._arrived.append(frame)
        if (
            frame.received_at - self._arrived[0].received_at >= BATCH_SECONDS
            or len(self._arrived) >= MAX_BATCH
        ):
            self._take_arrived()

    def _take_arrived(self) -> None:
        """Record the frames that have arrived since the last time."""
        arrived, self._arrived = self._arrived, []
        for frame in arrived:
            self._take(frame)
        now = time.monotonic()
        if now - self._last_sync >= self._fsync_seconds and self._writer is not None:
            self._then(self._writer.sync)
            self._last_sync = now

    def _take(self, frame: EncodedFrame) -> None:
        if self._writer is None:
            if not self._open_when_ready(frame):
                return
        elif (
            frame.keyframe
            and (frame.kind is MediaKind.VIDEO or MediaKind.VIDEO not in self._formats)
            and time.monotonic() - self._segment_started_mono >= self._segment_seconds
        ):
            self._seal()
            if not self._open():
                self.frames_dropped += 1
                return
        self._write(frame)

    def on_sender_report(self, kind: MediaKind, ntp: int, rtp_timestamp: int) -> None:
        """An RTCP sender report for the ``kind`` track: ``ntp`` its 64-bit NTP timestamp, and
        ``rtp_timestamp`` counted as that track's frames' timestamps are (modulo 2**32). From then
        on the track's frames are timed on the sender's clock (A/V sync, see
        :mod:`media_relay.recording.clock`)."""
        self._take_arrived()  # on the clock as it was when they came
        self.clock.on_sender_report(kind, ntp_seconds(ntp), rtp_timestamp)

    def source_restarted(self) -> None:
        """A new publisher session feeds this recorder: its RTP clocks start again."""
        self._take_arrived()  # on the clock as it was when they came
        self.clock.restart()

    def pause(self) -> None:
        """The publisher dropped: seal what is recorded so far; :meth:`resume` notes the gap."""
        self._take_arrived()
        if self._writer is not None:
            self._seal()

    def resume(self, reason: str) -> None:
        """The publisher is back: record the gap, then start a segment at its next keyframe."""
        self._take_arrived()
        if self._writer is not None:
            self._seal()
        self._note_gap(reason)
        self.source_restarted()

    def close(self) -> None:
        """Seal the last segment and wait until it and everything before it is on disk."""
        self._finish()
        if self._tail is not None:
            self._tail.result()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        self._finish()
        if self._tail is not None:
            await asyncio.wrap_future(self._tail)

    def _finish(self) -> None:
        if self.closed:
            return
        self._take_arrived()
        self.closed = True
        if self._writer is not None:
            self._seal()
        if self._pending_audio:
            self.frames_dropped += len(self._pending_audio)
            self._pending_audio.clear()

    def _write_failed(self, error: Exception) -> None:
        """Tell whoever listens (the command room, in the end): at most one report per 10 s."""
        now = time.monotonic()
        if self._on_write_error is None or now - self._last_error_report < 10:
            return
        self._last_error_report = now
        try:
            self._on_write_error(f"{type(error).__name__}: {error}"[:300])
        except Exception:
            logger.exception("stream %s: the write error could not be reported", self.stream_id)

    def _then(self, task: Callable[[], object]) -> None:
        """Run ``task`` on the disk thread after this recorder's earlier tasks."""
        previous = self._tail

        def run() -> None:
            if previous is not None:
                previous.result()  # never raises: each task logs its own failure
            try:
                task()
            except Exception as error:
                logger.exception("stream %s: recording to disk failed", self.stream_id)
                self._write_failed(error)

        self._tail = _DISK.submit(run)

    # -- segments ------------------------------------------------------------------------------

    def _open_when_ready(self, frame: EncodedFrame) -> bool:
        """A segment with video starts at a keyframe; audio before it is held, then written."""
        video = self._formats.get(MediaKind.VIDEO)
        if video is not None:
            if frame.kind is MediaKind.VIDEO and frame.keyframe and not video.ready:
                video.learn_from_keyframe(frame)
            if not (frame.kind is MediaKind.VIDEO and frame.keyframe and video.ready):
                if frame.kind is MediaKind.AUDIO:
                    if len(self._pending_audio) == self._pending_audio.maxlen:
                        self.frames_dropped += 1
                    self._pending_audio.append(frame)
                else:
                    self.frames_dropped += 1
                return False
        if not self._open():
            self.frames_dropped += 1  # the audio held stays held, for the next keyframe
            return False
        while self._pending_audio:
            self._write(self._pending_audio.popleft())
        return True

    def _open(self) -> bool:
        """Start the next segment; False (and the failure reported) when its file cannot be made:
        the next keyframe tries again."""
        name = f"{self.stream_id}-{self._sequence:05d}.mkv"
        try:
            self._writer = SegmentWriter(self.directory / name, list(self._formats.values()))
        except OSError as error:
            logger.exception("stream %s: could not start segment %s", self.stream_id, name)
            self._write_failed(error)
            if isinstance(error, FileExistsError):
                self._sequence += 1  # never written over: the next name
            return False
        self._segment_started_wall = datetime.now(UTC)
        self._segment_started_mono = time.monotonic()
        return True

    def _write(self, frame: EncodedFrame) -> None:
        assert self._writer is not None
        pts = self.clock.media_time(frame.kind, frame.timestamp, frame.clock_rate, frame.received_at)
        last = self._last_pts.get(frame.kind)
        if last is not None and pts <= last:
            pts = last + 1 / 90000
        self._last_pts[frame.kind] = pts
        try:
            self._writer.write(frame, pts)
        except Exception as error:
            lost = error.frames if isinstance(error, ClusterLost) else 0  # written, then lost with it
            self.frames_written -= lost
            self.frames_dropped += 1 + lost
            logger.exception("stream %s: could not write a %s frame", self.stream_id, frame.kind.value)
            self._write_failed(error)
            return
        self.frames_written += 1

    def _seal(self) -> None:
        """Hand the open segment to the disk thread to be finished, hashed and listed."""
        writer, self._writer = self._writer, None
        assert writer is not None and self._segment_started_wall is not None
        entry = {
            "type": "segment",
            "stream_id": self.stream_id,
            "sequence": self._sequence,
            "file": writer.path.name,
            "started_at": utc_iso(self._segment_started_wall),
            "ended_at": utc_iso(),
            "media_start": round(writer.first_pts or 0.0, 6),
            "media_end": round(writer.last_pts or 0.0, 6),
            "frames": {kind.value: count for kind, count in writer.frames.items()},
            "clock": {kind.value: self.clock.source(kind).value for kind in self._formats},
        }
        self._sequence += 1

        def finish() -> None:
            size = writer.close()
            self._append({**entry, "bytes": size, "sha256": sha256_file(writer.path)})

        self._then(finish)

    def _epoch(self) -> float:
        """The monotonic time that is 0 on the stream's timeline. A stream recorded before (the
        publisher came back after its grace, the relay restarted) goes on from where its timeline
        would be now, never before its last segment's end; a new one starts at 0 now."""
        now = time.monotonic()
        segments = [entry for entry in self.manifest.entries() if entry.get("type") == "segment"]
        if not segments:
            return now
        first, last = segments[0], segments[-1]
        try:
            since_first = (datetime.now(UTC) - datetime.fromisoformat(first["started_at"])).total_seconds()
            elapsed = max(float(first["media_start"]) + since_first, float(last["media_end"]) + 1.0)
        except (KeyError, TypeError, ValueError):
            return now
        return now - elapsed

    def _next_sequence(self) -> int:
        """After the last sequence in the manifest or on disk: a file is never written over."""
        last = 0
        for entry in self.manifest.entries():
            if entry.get("type") == "segment":
                last = max(last, int(entry["sequence"]))
        for path in self.directory.glob(f"{self.stream_id}-*.mkv"):
            if match := _SEQUENCE_IN_NAME.search(path.name):
                last = max(last, int(match.group(1)))
        return last + 1

    def _note_gap(self, reason: str) -> None:
        ended_at = utc_iso()

        def note() -> None:
            last = self.manifest.last_entry
            if last is not None:
                self._append(
                    {
                        "type": "gap",
                        "stream_id": self.stream_id,
                        "started_at": last.get("ended_at"),
                        "ended_at": ended_at,
                        "reason": reason,
                    }
                )

        self._then(note)

    def _append(self, entry: dict[str, Any]) -> None:
        written = self.manifest.append(entry)
        if self._on_entry is not None:
            try:
                self._on_entry(written, self.manifest.head, self.directory)
            except Exception:
                logger.exception("stream %s: the manifest entry listener failed", self.stream_id)
