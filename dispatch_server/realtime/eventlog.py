"""The event log: every pushed message is written to SQL with an increasing id before it is
pushed (DESIGN.md 4), so a client that reconnects with the last id it saw misses nothing.

Ids are taken from :class:`~dispatch_server.realtime.models.EventCounter` inside the transaction
that changes the domain, so an event is committed together with what it reports, and events
commit in id order. The bus then only rings the doorbell: each connection reads its events from
SQL after its own cursor (see :mod:`dispatch_server.realtime.views`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dispatch_server.realtime.bus import Bus
from dispatch_server.realtime.messages import EventMessage, event_message
from dispatch_server.realtime.models import Event, EventCounter

__all__ = [
    "LoggedEvent",
    "ensure_counter",
    "find",
    "hold",
    "newest_id",
    "publish",
    "read_after",
    "record",
]

COUNTER_ID = 1


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event for the log: where it goes, what it says, and what it is about."""

    channel: str
    """``person.<id>`` or ``command``."""
    message: EventMessage
    """The message; its ``event_id`` is set once :func:`record` has written it."""
    subject: str | None = None
    """What it is about (``directive:12``), to find it again."""


async def ensure_counter(connection: AsyncConnection) -> None:
    """Create the counter row on a new database (called while the schema is locked)."""
    if await connection.scalar(select(EventCounter.id).where(EventCounter.id == COUNTER_ID)) is None:
        start = await connection.scalar(select(func.max(Event.id))) or 0
        await connection.execute(insert(EventCounter).values(id=COUNTER_ID, last_id=start))


async def hold(*, db_session: AsyncSession) -> None:
    """Take the log's lock for the rest of the transaction. Call it before reading the state the
    events will report: then a later event id always reports a later state (without it, two
    transactions could each read the other's change as not yet made, and the later event would
    report a stale state). SQLite needs nothing: its writers are serialised from the first write."""
    await db_session.execute(
        select(EventCounter.last_id).where(EventCounter.id == COUNTER_ID).with_for_update()
    )


async def record(*, db_session: AsyncSession, events: Sequence[LoggedEvent]) -> list[LoggedEvent]:
    """Write ``events`` in the caller's transaction, which must commit before they are published.
    Returns them with their ids. Holds the counter row's lock until that transaction ends."""
    if not events:
        return []
    taken = await db_session.execute(
        update(EventCounter)
        .where(EventCounter.id == COUNTER_ID)
        .values(last_id=EventCounter.last_id + len(events))
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise RuntimeError("the event counter row is missing: Database.start() creates it")
    last = await db_session.scalar(select(EventCounter.last_id).where(EventCounter.id == COUNTER_ID))
    assert last is not None
    first = last - len(events) + 1
    logged = [
        replace(event, message=event.message.model_copy(update={"event_id": first + n}))
        for n, event in enumerate(events)
    ]
    await db_session.execute(
        insert(Event),
        [
            {
                "id": event.message.event_id,
                "channel": event.channel,
                "type": event.message.type,
                "subject": event.subject,
                "payload": event.message.model_dump_json(exclude={"event_id"}),
            }
            for event in logged
        ],
    )
    return logged


async def publish(*, bus: Bus, events: Iterable[LoggedEvent]) -> None:
    """Push events that are committed."""
    for event in events:
        await bus.publish(event.channel, event.message)


async def newest_id(*, db_session: AsyncSession) -> int:
    """The newest committed event id (0 on a new database)."""
    return await db_session.scalar(select(EventCounter.last_id).where(EventCounter.id == COUNTER_ID)) or 0


async def read_after(
    *, db_session: AsyncSession, after: int, channels: Sequence[str], limit: int
) -> list[EventMessage]:
    """Up to ``limit`` events on ``channels`` with ids above ``after``, oldest first."""
    rows = await db_session.execute(
        select(Event.id, Event.payload)
        .where(Event.id > after, Event.channel.in_(channels))
        .order_by(Event.id)
        .limit(limit)
    )
    return [
        event_message.validate_json(payload).model_copy(update={"event_id": event_id})
        for event_id, payload in rows
    ]


async def find(
    *, db_session: AsyncSession, channel: str, type: str, subjects: Sequence[str]
) -> dict[str, int]:
    """The first event id of this type on this channel for each subject that has one."""
    if not subjects:
        return {}
    rows = await db_session.execute(
        select(Event.subject, func.min(Event.id))
        .where(Event.channel == channel, Event.type == type, Event.subject.in_(subjects))
        .group_by(Event.subject)
    )
    return {subject: event_id for subject, event_id in rows if subject is not None}
