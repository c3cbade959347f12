"""Time for the dispatch server: one injectable clock, so that rules that run on time (deadlines,
escalations) can be tested by moving time rather than waiting for it.

:class:`SystemClock` is the real one. :class:`ManualClock` stands still until a test moves it with
:meth:`ManualClock.advance`; whoever sleeps on it wakes when its time has come.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Return once ``now() >= when`` (at once if it already is)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock:
    """A clock that only moves when told to. Sleepers wake when :meth:`advance` passes their time."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock keeps UTC: give it an aware datetime")
        self._now = start.astimezone(UTC)
        self._changed = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._now >= when)

    async def advance(self, seconds: float) -> datetime:
        """Move time forward and wake whoever's time has come; the new time."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        async with self._changed:
            self._now += timedelta(seconds=seconds)
            self._changed.notify_all()
        return self._now
