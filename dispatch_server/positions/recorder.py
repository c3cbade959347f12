"""Positions are written in batches: thousands of fixes a second must not mean thousands of
transactions a second.

An accepted fix waits in memory for at most ``flush_seconds`` (1 s by default; sooner when
``max_batch`` are waiting), then one transaction stores the whole batch: one multi-row INSERT into
the track (``position``) and one upsert of each person's newest fix (``last_position``). Once per
``flush_seconds``, after the commit, one ``positions`` message carries each officer's newest
stored fix to the command room: at most one per officer per ``flush_seconds``, which is the
wall's throttle (early flushes of full batches store, but do not push).

**What a crash can lose:** the fixes still waiting here, which are those accepted in the last
``flush_seconds`` before it, nothing older, as long as the store keeps up (measured: about 10,000
fixes a second on one core, see ``bench/README.md``). A store that falls behind holds at most
``max_pending`` fixes (see below). A clean stop (:meth:`PositionRecorder.stop`) stores them first.
A failed write keeps its batch for the next flush.

**Backpressure.** When more than ``2 * max_batch`` fixes wait, :meth:`PositionRecorder.room` makes
the websockets wait before reading their next message (uvicorn then stops reading those sockets,
and TCP slows the senders down), so that storing keeps up with accepting and a flood cannot
starve the writer. Past ``max_pending`` waiting, new fixes are refused (429) rather than memory
grown without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.db import Database
from dispatch_server.errors import TooManyRequests
from dispatch_server.positions.models import LastPosition, PositionFix
from dispatch_server.positions.schemas import PositionOut
from dispatch_server.realtime.bus import Bus, command_channel
from dispatch_server.realtime.messages import PositionsMessage

__all__ = ["Fix", "PositionRecorder"]

logger = logging.getLogger(__name__)

PUSH_CHUNK = 500
"""Fixes per ``positions`` message (so that no single push grows with the number of officers)."""


@dataclass(frozen=True, slots=True)
class Fix:
    """An accepted fix, waiting to be stored."""

    person_id: int
    at: datetime
    """The device's time of the fix."""
    received_at: datetime
    """The server's time of acceptance."""
    latitude: float
    longitude: float
    accuracy_m: float
    heading_deg: float | None = None
    speed_mps: float | None = None


def _row(fix: Fix) -> dict[str, Any]:
    """The fix as column values (``dataclasses.asdict`` deep-copies every value: measured as most
    of a flush's own time at 5,000 fixes a batch)."""
    return {name: getattr(fix, name) for name in _COLUMNS}


def newest_per_person(fixes: Sequence[Fix]) -> list[Fix]:
    """Each person's newest fix (by the device's time; the later arrival on a tie)."""
    newest: dict[int, Fix] = {}
    for fix in fixes:
        seen = newest.get(fix.person_id)
        if seen is None or fix.at >= seen.at:
            newest[fix.person_id] = fix
    return list(newest.values())


_COLUMNS = tuple(f.name for f in fields(Fix))
TRACK = cast(Table, PositionFix.__table__)
LATEST = cast(Table, LastPosition.__table__)


def _upsert_newest(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (person_id) DO UPDATE, only where the new fix is newer."""
    table = LATEST
    statement: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    columns = [column.name for column in table.columns if column.name != "person_id"]
    return statement.on_conflict_do_update(
        index_elements=[table.c.person_id],
        set_={name: statement.excluded[name] for name in columns},
        where=table.c.at < statement.excluded.at,
    )


async def store(*, db_session: AsyncSession, fixes: Sequence[Fix]) -> list[Fix]:
    """Store a batch in one transaction (committed); each person's newest fix of it is returned."""
    newest = newest_per_person(fixes)
    await db_session.execute(insert(TRACK), [_row(fix) for fix in fixes])
    await db_session.execute(
        _upsert_newest(db_session.get_bind().dialect.name), [_row(fix) for fix in newest]
    )
    await db_session.commit()
    return newest


class PositionRecorder:
    """Owns the buffer and the loop that flushes it: :meth:`start`, :meth:`add`, :meth:`stop`."""

    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        flush_seconds: float = 1.0,
        max_batch: int = 5000,
        max_pending: int = 100_000,
    ) -> None:
        self._db = db
        self._bus = bus
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: list[Fix] = []
        self._wake = asyncio.Event()
        """Set when ``max_batch`` fixes are waiting, or on stop: flush without waiting."""
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._room = asyncio.Event()
        self._room.set()
        self._unpushed: dict[int, Fix] = {}
        """Each person's newest stored fix not yet pushed."""
        self.stored = 0
        """Fixes stored since start (for tests and the benchmark's context)."""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, fixes: Sequence[Fix]) -> None:
        """Accept fixes: stored within ``flush_seconds``. :class:`TooManyRequests` when the store
        is so far behind that ``max_pending`` are waiting."""
        if len(self._pending) + len(fixes) > self.max_pending:
            raise TooManyRequests("positions arrive faster than they can be stored: send again shortly", 1)
        self._pending.extend(fixes)
        if len(self._pending) >= self.max_batch:
            self._wake.set()
            if len(self._pending) >= 2 * self.max_batch:
                self._room.clear()

    async def room(self) -> None:
        """Return once the store is not behind (at once, mostly): a websocket awaits this before
        reading on, so a sender faster than the store is slowed down instead of refused."""
        await self._room.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="position-recorder")

    async def stop(self) -> None:
        """Stop the loop, letting a flush under way finish (a batch cut off in its commit could be
        neither kept nor known to be stored), then store what is still waiting."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        while self._pending:
            if not await self.flush():
                logger.error("could not store %d position fix(es) on stop: lost", len(self._pending))
                self._pending.clear()
        await self.push()

    async def tick(self) -> None:
        """What the loop does every ``flush_seconds``: store what waits, push what was stored."""
        await self.flush()
        await self.push()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.flush_seconds
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_tick - loop.time()))
            if self._stopping:
                return
            try:
                if loop.time() < next_tick:
                    await self.flush()  # a full batch before its time: stored now, pushed on the tick
                    continue
                next_tick = loop.time() + self.flush_seconds
                await self.tick()
            except Exception:
                logger.exception("storing or pushing positions failed")

    async def flush(self) -> bool:
        """Store up to ``max_batch`` waiting fixes; each person's newest waits for :meth:`push`.
        False when the write failed (the batch waits for the next flush)."""
        async with self._flushing:
            batch = self._pending[: self.max_batch]
            if not batch:
                return True
            del self._pending[: len(batch)]
            if len(self._pending) < self.max_batch:
                self._wake.clear()
            if len(self._pending) < 2 * self.max_batch:
                self._room.set()
            try:
                async with self._db.sessions() as db_session:
                    newest = await store(db_session=db_session, fixes=batch)
            except Exception:
                logger.exception(
                    "storing %d position fix(es) failed; retrying with the next flush", len(batch)
                )
                self._pending[:0] = batch
                return False
            self.stored += len(batch)
            for fix in newest:
                seen = self._unpushed.get(fix.person_id)
                if seen is None or fix.at >= seen.at:
                    self._unpushed[fix.person_id] = fix
        return True

    async def push(self) -> None:
        """Send the command room each person's newest stored fix since the last push: called once
        per ``flush_seconds``, so no officer is pushed more often than that."""
        newest, self._unpushed = list(self._unpushed.values()), {}
        positions = [PositionOut.model_validate(fix, from_attributes=True) for fix in newest]
        for start in range(0, len(positions), PUSH_CHUNK):
            message = PositionsMessage(positions=positions[start : start + PUSH_CHUNK])
            await self._bus.publish(command_channel(), message)
