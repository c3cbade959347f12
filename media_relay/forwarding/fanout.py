"""One publisher track to many viewer tracks, each behind a bounded buffer."""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media_relay.forwarding.frames import EncodedFrame, MediaKind

__all__ = ["ForwardTrack", "TrackFanout"]

logger = logging.getLogger(__name__)


class ForwardTrack(MediaStreamTrack):
    """A viewer's outgoing track: encoded frames in, ``av.Packet`` out, nothing decoded.

    aiortc's sender packetizes an ``av.Packet`` without encoding it. The buffer is bounded: a
    viewer that falls ``capacity`` frames behind loses its backlog, waits for the next keyframe
    and asks for one, so it never slows the publisher, the recording or the other viewers.
    """

    def __init__(self, kind: MediaKind, capacity: int, on_keyframe_needed: Callable[[], None]) -> None:
        super().__init__()
        self.kind = kind.value
        self._media_kind = kind
        self._queue: asyncio.Queue[EncodedFrame | None] = asyncio.Queue(maxsize=capacity)
        self._on_keyframe_needed = on_keyframe_needed
        self._waiting_for_keyframe = kind is MediaKind.VIDEO
        self.frames_sent = 0
        self.frames_dropped = 0
        self.overflows = 0

    def offer(self, frame: EncodedFrame) -> None:
        """Queue a frame for this viewer, or drop it; never blocks."""
        if self.readyState != "live":
            return
        if self._waiting_for_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                return
            self._waiting_for_keyframe = False
        if self._queue.full():
            self.overflows += 1
            self.frames_dropped += self._queue.qsize()
            while not self._queue.empty():
                self._queue.get_nowait()
            if self._media_kind is MediaKind.VIDEO and not frame.keyframe:
                self._waiting_for_keyframe = True
                self.frames_dropped += 1
                self._on_keyframe_needed()
                return
        self._queue.put_nowait(frame)

    def end(self) -> None:
        """The source is gone: let ``recv`` finish once the buffer is drained."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.dts = frame.timestamp
        packet.time_base = fractions.Fraction(1, frame.clock_rate)
        packet.is_keyframe = frame.keyframe
        self.frames_sent += 1
        return packet


class RateWindow:
    """Frames and bytes per second over the last few whole seconds, counted as they pass."""

    SECONDS = 3

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: deque[list[int]] = deque(maxlen=self.SECONDS + 1)  # [second, frames, bytes]

    def add(self, size: int) -> None:
        second = int(self._clock())
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += size

    def rates(self) -> tuple[float, float]:
        """(frames per second, bits per second) over the last whole seconds."""
        now = int(self._clock())
        frames = size = 0
        for second, count, total in self._buckets:
            if now - self.SECONDS <= second < now:
                frames += count
                size += total
        return frames / self.SECONDS, size * 8 / self.SECONDS


class TrackFanout:
    """Delivers one publisher track's frames to its viewers' tracks and to any sinks."""

    def __init__(self, kind: MediaKind) -> None:
        self.kind = kind
        self.codec: str | None = None
        self.frames = 0
        self.bytes = 0
        self.rate = RateWindow()
        self._tracks: set[ForwardTrack] = set()
        self._sinks: list[Callable[[EncodedFrame], None]] = []
        self._last_timestamp: int | None = None
        self._offset = 0
        self._rebase = False

    @property
    def viewer_count(self) -> int:
        return len(self._tracks)

    def add_sink(self, sink: Callable[[EncodedFrame], None]) -> None:
        self._sinks.append(sink)

    def attach(self, track: ForwardTrack) -> None:
        self._tracks.add(track)

    def detach(self, track: ForwardTrack) -> None:
        self._tracks.discard(track)

    def source_restarted(self) -> None:
        """A new publisher session feeds this fanout: keep outgoing timestamps increasing."""
        self._rebase = True

    def deliver(self, frame: EncodedFrame) -> None:
        if self._rebase and self._last_timestamp is not None:
            step = frame.clock_rate // 15 if self.kind is MediaKind.VIDEO else 960
            self._offset = self._last_timestamp + step - frame.timestamp
        self._rebase = False
        if self._offset:
            frame = EncodedFrame(
                kind=frame.kind,
                codec=frame.codec,
                data=frame.data,
                timestamp=frame.timestamp + self._offset,
                clock_rate=frame.clock_rate,
                keyframe=frame.keyframe,
                received_at=frame.received_at,
            )
        self._last_timestamp = frame.timestamp
        self.codec = frame.codec
        self.frames += 1
        self.bytes += len(frame.data)
        self.rate.add(len(frame.data))
        for sink in self._sinks:
            try:
                sink(frame)
            except Exception:
                logger.exception("frame sink failed")
        for track in tuple(self._tracks):
            track.offer(frame)

    def end(self) -> None:
        for track in tuple(self._tracks):
            track.end()
        self._tracks.clear()
