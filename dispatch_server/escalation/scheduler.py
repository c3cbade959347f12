"""The loop that fires escalations on time. Its state is the ``ack_timer`` table: it keeps none of
its own, so a restart or a second dispatch process picks up exactly where things stand."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta

from dispatch_server.db import Database
from dispatch_server.escalation import service
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import Bus
from dispatch_server.scheduling.clock import Clock

__all__ = ["EscalationScheduler"]

logger = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
"""After a failed run, wait this long (real time) before trying again."""


class EscalationScheduler:
    """Wakes when the next timer falls due (and at least every ``poll`` of the clock's time, for
    timers other processes started), fires what is due, pushes the events. ``start`` starts it,
    ``stop`` cancels it and waits for it."""

    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        clock: Clock,
        leader_after: timedelta,
        poll: timedelta,
        leader_post: str | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._leader_after = leader_after
        self._poll = poll
        self._leader_post = leader_post
        """The duty post whose holder gets second-level escalations (None: the first leader)."""
        self._task: asyncio.Task[None] | None = None
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        """Who fires: written on each escalation."""
        self.idle_until: datetime | None = None
        """While it sleeps: until when. Everything due before then has been fired."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="escalation-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> int:
        """Fire everything due now; the number of escalations fired."""
        fired = 0
        while True:
            async with self._db.sessions() as db_session:
                logged = await service.fire_due(
                    db_session=db_session,
                    now=self._clock.now(),
                    leader_after=self._leader_after,
                    node=self.node,
                    leader_post=self._leader_post,
                )
            await eventlog.publish(bus=self._bus, events=logged)
            fired += len(logged)
            if len(logged) < service.BATCH:
                return fired

    async def _run(self) -> None:
        while True:
            try:
                fired = await self.run_once()
                if fired:
                    logger.info("fired %d escalation(s)", fired)
                async with self._db.sessions() as db_session:
                    due = await service.next_due(db_session=db_session)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("escalation run failed; retrying in %s s", RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            now = self._clock.now()
            wake = now + self._poll
            if due is not None and due < wake:
                if due <= now:  # acknowledged meanwhile, or claimed elsewhere: look again shortly
                    await asyncio.sleep(0.05)
                    continue
                wake = due
            self.idle_until = wake
            try:
                await self._clock.sleep_until(wake)
            finally:
                self.idle_until = None
