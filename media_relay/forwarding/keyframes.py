"""Keyframe requests to a publisher, coalesced to at most one per interval and never dropped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["KeyframeRequester"]

logger = logging.getLogger(__name__)


class KeyframeRequester:
    """Asks a publisher for a keyframe (RTCP PLI) on behalf of every viewer and the recorder.

    A request inside the interval after the last one sent is not lost: one request is sent when
    the interval ends, however many arrived meanwhile.
    """

    def __init__(self, send: Callable[[], Awaitable[object]], interval: float) -> None:
        self._send = send
        self._interval = interval
        self._last_sent = float("-inf")
        self._pending: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0
        self.requested = 0

    def request(self) -> None:
        self.requested += 1
        if self._pending is not None:
            return
        wait = self._last_sent + self._interval - time.monotonic()
        loop = asyncio.get_running_loop()
        if wait <= 0:
            self._fire()
        else:
            self._pending = loop.call_later(wait, self._fire)

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        for task in self._tasks:
            task.cancel()

    def _fire(self) -> None:
        self._pending = None
        self._last_sent = time.monotonic()
        self.sent += 1
        task = asyncio.get_running_loop().create_task(self._send_logged())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_logged(self) -> None:
        try:
            await self._send()
        except Exception:
            logger.exception("keyframe request failed")
