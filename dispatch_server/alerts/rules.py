"""The loop that runs the alert rules on time.

A rule is a check, ``async def check(db_session, now) -> list[LoggedEvent]``, registered with
:meth:`RuleRunner.add`. Every ``alerts.check_seconds`` of the app's clock (and at once when
:meth:`RuleRunner.kick` says something changed, e.g. a stream went down) the runner calls each
check in a session of its own, commits that session, and publishes the events the check returns.

A check keeps no state of its own: it reads what is in SQL, raises what should be open
(:func:`~dispatch_server.alerts.service.raise_alert`) and resolves what should not be any more
(:func:`~dispatch_server.alerts.service.resolve_open`). So a restart loses nothing, and with
several dispatch processes each running every check, the open-alert unique index makes each
alert open exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.db import Database
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import Bus
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.scheduling.clock import Clock

__all__ = ["Check", "RuleRunner"]

logger = logging.getLogger(__name__)

Check = Callable[[AsyncSession, datetime], Awaitable[list[LoggedEvent]]]
"""``check(db_session, now)``: raise and resolve what the rule says; the logged events."""


class RuleRunner:
    """Runs the registered checks every ``every`` of the clock's time. ``start`` starts it,
    ``stop`` cancels it and waits for it."""

    def __init__(self, *, db: Database, bus: Bus, clock: Clock, every: timedelta) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._every = every
        self._checks: dict[str, Check] = {}
        self._task: asyncio.Task[None] | None = None
        self._kicked = asyncio.Event()
        self.idle_until: datetime | None = None
        """While it sleeps: until when. Every check has run at a time after ``idle_until - every``."""
        self.runs = 0
        """How many rounds have completed (for tests and the curious)."""

    @property
    def settled(self) -> bool:
        """Asleep with nothing pending: every check has run since the last :meth:`kick`."""
        return self.idle_until is not None and not self._kicked.is_set()

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    def add(self, name: str, check: Check) -> None:
        """Register a check under a name (for the logs); a name given twice is a mistake."""
        if name in self._checks:
            raise ValueError(f"a rule named {name!r} is registered already")
        self._checks[name] = check

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-rules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def kick(self) -> None:
        """Run the checks now rather than at the next tick (something they read has changed)."""
        self._kicked.set()

    async def run_once(self, now: datetime | None = None) -> int:
        """Run every check once at ``now`` (default: the clock's time); the number of events
        published. A check that fails is logged and does not stop the others."""
        published = 0
        now = now or self._clock.now()
        for name, check in list(self._checks.items()):
            try:
                async with self._db.sessions() as db_session:
                    events = await check(db_session, now)
                    await db_session.commit()
            except Exception:
                logger.exception("alert rule %r failed; it runs again at the next tick", name)
                continue
            await eventlog.publish(bus=self._bus, events=events)
            published += len(events)
        return published

    async def _run(self) -> None:
        while True:
            self._kicked.clear()
            now = self._clock.now()
            await self.run_once(now)
            self.runs += 1
            wake = now + self._every  # from when it looked, not when it finished: nothing is skipped
            self.idle_until = wake
            try:
                await self._sleep_until(wake)
            finally:
                self.idle_until = None

    async def _sleep_until(self, wake: datetime) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep_until(wake))
        kicked = asyncio.ensure_future(self._kicked.wait())
        try:
            await asyncio.wait({sleeper, kicked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, kicked):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
