"""Video health (R8): is the bodycam's picture frozen, black or covered?

Decoding every frame would cost what forwarding saves, so the monitor decodes keyframes only
(they need no earlier frame), off the event loop, and asks the publisher for one when none came
for a while. One stream is checked at most once per ``interval``, and all streams together at
most :class:`CheckBudget` times a second, so the relay's cost for health stays flat however many
streams there are: with more streams, each is checked less often. The rules are plain functions of
the pictures.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import av
import cv2
import numpy as np

from media_relay.forwarding.frames import EncodedFrame, MediaKind

__all__ = ["CheckBudget", "HealthFlag", "HealthRules", "PictureFacts", "VideoHealthMonitor", "picture_facts"]

logger = logging.getLogger(__name__)

THUMB = (64, 36)
SMALL = (160, 90)
"""The size the picture's brightness and spread are measured at: plenty for a lens cap or a hand."""


class HealthFlag(enum.StrEnum):
    FROZEN = "frozen"
    """The picture has not changed for ``frozen_seconds``."""
    BLACK = "black"
    """The picture is (nearly) black: lens cap, camera off, dark pocket."""
    COVERED = "covered"
    """The picture is one flat colour that is not black: a hand, cloth or tape over the lens."""
    NO_VIDEO = "no_video"
    """No video frames for ``stall_seconds`` while the publisher is connected."""


@dataclass(frozen=True, slots=True)
class PictureFacts:
    mean: float
    """Mean luma, 0-255."""
    spread: float
    """Standard deviation of the luma: how much there is to see."""
    thumb: np.ndarray
    """A tiny grey copy, to compare pictures."""


def picture_facts(gray: np.ndarray) -> PictureFacts:
    small = cv2.resize(gray, SMALL, interpolation=cv2.INTER_AREA)
    mean, spread = cv2.meanStdDev(small)
    thumb = cv2.resize(small, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
    return PictureFacts(mean=float(mean[0, 0]), spread=float(spread[0, 0]), thumb=thumb)


class CheckBudget:
    """Pictures all streams together may decode per second, shared out evenly: with ``n`` streams
    each is checked at most every ``n / per_second`` seconds (and never more often than its own
    interval)."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.monitors = 0

    def interval(self, own: float) -> float:
        return max(own, self.monitors / self.per_second)


@dataclass
class HealthRules:
    black_mean: float = 24.0
    flat_spread: float = 6.0
    frozen_difference: float = 2.5
    """Largest mean change (0-255) between two 64x36 grey copies still counted as the same picture:
    coarse enough for the encoder's noise from one keyframe to the next. A camera left looking at a
    still scene counts as frozen too: on a field operation, both need someone to look."""
    frozen_seconds: float = 5.0
    stall_seconds: float = 2.0

    def picture_flags(self, facts: PictureFacts) -> set[HealthFlag]:
        if facts.mean < self.black_mean and facts.spread < 2 * self.flat_spread:
            return {HealthFlag.BLACK}
        if facts.spread < self.flat_spread:
            return {HealthFlag.COVERED}
        return set()

    def same_picture(self, a: PictureFacts, b: PictureFacts) -> bool:
        return float(np.abs(a.thumb - b.thumb).mean()) < self.frozen_difference


class VideoHealthMonitor:
    """A sink for one stream's video frames; calls ``on_change`` with the flags when they change."""

    def __init__(
        self,
        *,
        on_change: Callable[[frozenset[HealthFlag]], Awaitable[None]],
        request_keyframe: Callable[[], None],
        interval: float = 2.0,
        keyframe_every: float = 3.0,
        budget: CheckBudget | None = None,
        rules: HealthRules | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules or HealthRules()
        self._budget = budget or CheckBudget(per_second=1 / interval)
        self.flags: frozenset[HealthFlag] = frozenset()
        self.pictures_checked = 0
        self._on_change = on_change
        self._request_keyframe = request_keyframe
        self._interval = interval
        self._keyframe_every = keyframe_every
        self._clock = clock
        self._decoder: av.VideoCodecContext | None = None
        self._codec: str | None = None
        self._busy = False
        self._last_checked = float("-inf")
        self._last_frame = clock()
        self._last_keyframe = clock()
        self._reference: PictureFacts | None = None
        self._reference_since = clock()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._budget.monitors += 1
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._budget.monitors -= 1
        tasks = [task for task in (self._task, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __call__(self, frame: EncodedFrame) -> None:
        if frame.kind is not MediaKind.VIDEO:
            return
        now = self._clock()
        self._last_frame = now
        if not frame.keyframe:
            return
        self._last_keyframe = now
        if self._busy or now - self._last_checked < self._budget.interval(self._interval):
            return
        self._busy = True
        self._last_checked = now
        task = asyncio.get_running_loop().create_task(self._check(frame, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, frame: EncodedFrame, at: float) -> None:
        try:
            gray = await asyncio.to_thread(self._decode, frame)
        finally:
            self._busy = False
        if gray is None:
            return
        self.pictures_checked += 1
        facts = picture_facts(gray)
        flags = set(self.rules.picture_flags(facts))
        if self._reference is None or not self.rules.same_picture(self._reference, facts):
            self._reference, self._reference_since = facts, at
        elif at - self._reference_since >= self.rules.frozen_seconds and not flags:
            flags.add(HealthFlag.FROZEN)
        await self._set(_switch(flags, HealthFlag.NO_VIDEO, HealthFlag.NO_VIDEO in self.flags))

    def _decode(self, frame: EncodedFrame) -> np.ndarray | None:
        if self._decoder is None or self._codec != frame.codec:
            decoder = av.CodecContext.create(frame.codec, "r")
            assert isinstance(decoder, av.VideoCodecContext)
            # A quarter less work, and the picture is still right for brightness and spread.
            decoder.options = {"skip_loop_filter": "all", "threads": "1"}
            self._decoder, self._codec = decoder, frame.codec
        try:
            pictures = self._decoder.decode(av.Packet(frame.data))
        except av.FFmpegError:
            return None
        for picture in pictures:
            assert isinstance(picture, av.VideoFrame)
            if picture.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12"):
                luma = picture.planes[0]  # already the grey picture: no conversion
                rows = np.frombuffer(memoryview(luma), np.uint8).reshape(luma.height, luma.line_size)
                return rows[:, : luma.width]
            return picture.to_ndarray(format="gray")
        return None

    async def _watch(self) -> None:
        """Flags a stall, and keeps keyframes coming so that the picture can be checked."""
        while True:
            await asyncio.sleep(0.5)
            now = self._clock()
            stalled = now - self._last_frame >= self.rules.stall_seconds
            if stalled != (HealthFlag.NO_VIDEO in self.flags):
                await self._set(
                    (set(self.flags) - {HealthFlag.NO_VIDEO}) | ({HealthFlag.NO_VIDEO} if stalled else set())
                )
            keyframe_every = max(self._keyframe_every, self._budget.interval(self._interval))
            if not stalled and now - self._last_keyframe >= keyframe_every:
                self._last_keyframe = now  # one request per period, answered or not
                self._request_keyframe()

    async def _set(self, flags: set[HealthFlag]) -> None:
        frozen = frozenset(flags)
        if frozen == self.flags:
            return
        self.flags = frozen
        try:
            await self._on_change(frozen)
        except Exception:
            logger.exception("health change could not be reported")


def _switch(flags: set[HealthFlag], flag: HealthFlag, on: bool) -> set[HealthFlag]:
    return flags | {flag} if on else flags - {flag}
