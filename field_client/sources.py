"""Media sources for the field client: a moving test pattern, a tone, a file, or a camera."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import av
import cv2
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamError

__all__ = ["CameraTrack", "StillTrack", "TestPatternTrack", "ToneTrack", "open_source"]

VIDEO_CLOCK = 90000


class _PacedVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, fps: float) -> None:
        super().__init__()
        self.fps = fps
        self.frames_sent = 0
        self._start: float | None = None

    async def _next_pts(self) -> int:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self.frames_sent / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pts = round(self.frames_sent * VIDEO_CLOCK / self.fps)
        self.frames_sent += 1
        return pts

    def _frame(self, image: np.ndarray, pts: int) -> av.VideoFrame:
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class TestPatternTrack(_PacedVideoTrack):
    """Colour bars with a bar sweeping across and a frame counter: every frame differs."""

    __test__ = False  # not a pytest class

    BARS = np.array(
        [[192, 192, 192], [0, 192, 192], [192, 192, 0], [0, 192, 0], [192, 0, 192], [0, 0, 192], [192, 0, 0]],
        dtype=np.uint8,
    )

    def __init__(self, width: int = 640, height: int = 480, fps: float = 15, label: str = "") -> None:
        super().__init__(fps)
        self.width = width
        self.height = height
        self.label = label
        columns = np.repeat(self.BARS, math.ceil(width / len(self.BARS)), axis=0)[:width]
        self._background = np.repeat(columns[np.newaxis, :, :], height, axis=0)

    async def recv(self) -> av.VideoFrame:
        pts = await self._next_pts()
        return self._frame(self.picture(), pts)

    def picture(self) -> np.ndarray:
        """The pattern as it looks at the current frame: bars, a sweeping bar, a counter."""
        image = self._background.copy()
        x = (self.frames_sent * 8) % self.width
        image[:, x : x + 16] = 255
        text = f"{self.label} #{self.frames_sent:06d} {time.strftime('%H:%M:%S')}"
        cv2.putText(image, text, (16, self.height - 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        return image


class StillTrack(_PacedVideoTrack):
    """The same picture again and again: a frozen camera, or (all zeros) a covered or dead one.
    For drills and for testing the relay's video health checks (R8)."""

    def __init__(self, image: np.ndarray, fps: float = 15) -> None:
        super().__init__(fps)
        self._image = image

    @classmethod
    def black(cls, width: int = 640, height: int = 480, fps: float = 15) -> StillTrack:
        return cls(np.zeros((height, width, 3), dtype=np.uint8), fps)

    @classmethod
    def frozen(cls, width: int = 640, height: int = 480, fps: float = 15) -> StillTrack:
        """One picture of the test pattern, never moving again."""
        return cls(TestPatternTrack(width, height).picture(), fps)

    async def recv(self) -> av.VideoFrame:
        return self._frame(self._image, await self._next_pts())


class CameraTrack(_PacedVideoTrack):
    """A local camera read through OpenCV, in a worker thread so the event loop never blocks."""

    def __init__(self, index: int, fps: float = 15) -> None:
        super().__init__(fps)
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise RuntimeError(f"camera {index} could not be opened")

    async def recv(self) -> av.VideoFrame:
        pts = await self._next_pts()
        ok, image = await asyncio.to_thread(self._capture.read)
        if not ok:
            self.stop()
            raise MediaStreamError
        return self._frame(image, pts)

    def stop(self) -> None:
        super().stop()
        self._capture.release()


class ToneTrack(MediaStreamTrack):
    """A quiet 440 Hz tone, 48 kHz mono, in 20 ms frames paced in real time."""

    kind = "audio"
    RATE = 48000

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self._frequency = frequency
        self._samples = int(AUDIO_PTIME * self.RATE)
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._sent / self.RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(self._samples) + self._sent) / self.RATE
        samples = (np.sin(2 * np.pi * self._frequency * t) * 3000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._sent += self._samples
        return frame


def open_source(spec: str, *, label: str = "") -> tuple[MediaStreamTrack | None, MediaStreamTrack | None]:
    """Video and audio tracks for a source spec: ``pattern``, ``black``, ``frozen``, ``camera[:N]``
    or a file path."""
    if spec == "pattern":
        return TestPatternTrack(label=label), ToneTrack()
    if spec == "black":
        return StillTrack.black(), ToneTrack()
    if spec == "frozen":
        return StillTrack.frozen(), ToneTrack()
    if spec == "camera" or spec.startswith("camera:"):
        index = int(spec.partition(":")[2] or 0)
        return CameraTrack(index), ToneTrack()
    player = MediaPlayer(spec, loop=True)
    if player.video is None and player.audio is None:
        raise ValueError(f"{spec} has no audio or video")
    return player.video, player.audio
