"""One publisher track to many viewer tracks and to the recorder."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from media_relay.forwarding.frames import EncodedFrame, MediaKind

__all__ = ["RateWindow", "TrackFanout", "ViewerTrack"]

logger = logging.getLogger(__name__)


class ViewerTrack(Protocol):
    """A viewer's outgoing track as the fanout sees it (``rtp_out.RtpForwarder``)."""

    def offer(self, frame: EncodedFrame) -> None:
        """Take a frame for the viewer; never blocks."""
        ...

    def end(self) -> None:
        """The source is gone."""
        ...


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
        self._tracks: set[ViewerTrack] = set()
        self._sinks: list[Callable[[EncodedFrame], None]] = []
        self._last_timestamp: int | None = None
        self._offset = 0
        self._rebase = False

    @property
    def offset(self) -> int:
        """What is added to the source's frame timestamps to keep them increasing across restarts."""
        return self._offset

    @property
    def viewer_count(self) -> int:
        return len(self._tracks)

    def add_sink(self, sink: Callable[[EncodedFrame], None]) -> None:
        self._sinks.append(sink)

    def attach(self, track: ViewerTrack) -> None:
        self._tracks.add(track)

    def detach(self, track: ViewerTrack) -> None:
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
            frame = dataclasses.replace(frame, timestamp=frame.timestamp + self._offset)
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
            try:
                track.offer(frame)
            except Exception:
                # One viewer's failure (its socket gone, its SRTP session broken) is its own: it
                # gets no more frames, the others and the recording go on. Its session ends itself.
                logger.exception("forwarding to a viewer failed; it gets no more frames")
                self._tracks.discard(track)

    def end(self) -> None:
        for track in tuple(self._tracks):
            track.end()
        self._tracks.clear()
