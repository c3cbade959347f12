"""Writing, reading and checking the audit log (R17).

:func:`record` appends one event in the caller's transaction, holding the log's lock until that
transaction ends, so that concurrent writers (tasks, processes, on SQLite or PostgreSQL) append one
after another and every row names its true predecessor. :func:`record_committed` does the same in
a transaction of its own, for attempts that fail or are refused (the caller's work rolls back; the
record of the attempt must not). :func:`verify_chain` recomputes every hash and link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dispatch_server.audit.models import AuditAction, AuditEvent, AuditHead, Outcome
from dispatch_server.db import Database, utcnow

__all__ = [
    "GENESIS_HASH",
    "Actor",
    "ChainProblem",
    "ChainReport",
    "canonical_json",
    "ensure_head",
    "list_events",
    "record",
    "record_committed",
    "record_success",
    "row_hash",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
HEAD_ID = 1
VERIFY_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who attempted something, as the request showed it."""

    person_id: int | None
    """None when nobody is signed in (a failed sign-in)."""
    name: str
    """The username (for a failed sign-in: nothing; the name tried goes in the detail)."""
    role: str
    source: str
    """The client's address."""


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: one text for one value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def row_hash(event: AuditEvent) -> str:
    """SHA-256 of the canonical JSON of every field but ``hash`` (``prev_hash`` included)."""
    body = {
        "id": event.id,
        "at": _utc_text(event.at),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "role": event.role,
        "source": event.source,
        "action": event.action,
        "object": event.object,
        "outcome": event.outcome,
        "detail": event.detail,
        "prev_hash": event.prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


async def ensure_head(connection: AsyncConnection) -> None:
    """Create the head row on a new database (called while the schema is locked)."""
    if await connection.scalar(select(AuditHead.id).where(AuditHead.id == HEAD_ID)) is None:
        await connection.execute(insert(AuditHead).values(id=HEAD_ID, last_id=0, last_hash=GENESIS_HASH))


async def record(
    *,
    db_session: AsyncSession,
    action: AuditAction,
    outcome: Outcome,
    actor: Actor,
    object: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction (which must commit for it to count). Holds the
    log's lock until that transaction ends: commit soon."""
    # The UPDATE comes first: it takes the lock before the head is read (PostgreSQL locks the row,
    # SQLite the database, from this first write on), so no other writer reads the same head.
    taken = await db_session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(last_id=AuditHead.last_id + 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise RuntimeError("the audit head row is missing: Database.start() creates it")
    head = (
        await db_session.execute(
            select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == HEAD_ID)
        )
    ).one()
    event = AuditEvent(
        id=head.last_id,
        at=utcnow(),
        actor_id=actor.person_id,
        actor_name=actor.name[:64],
        role=actor.role[:32],
        source=actor.source[:64],
        action=action.value,
        object=object[:256],
        outcome=outcome.value,
        detail=canonical_json(dict(detail or {})),
        prev_hash=head.last_hash,
    )
    event.hash = row_hash(event)
    db_session.add(event)
    await db_session.flush()
    await db_session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(last_hash=event.hash)
        .execution_options(synchronize_session=False)
    )
    return event


async def record_success(
    db_session: AsyncSession,
    actor: Actor,
    action: AuditAction,
    object: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Audit what ``actor`` did, a success, in the caller's transaction: it counts once the caller
    commits that, with the change it audits."""
    await record(
        db_session=db_session,
        action=action,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=object,
        detail=detail,
    )


async def record_committed(
    *,
    database: Database,
    action: AuditAction,
    outcome: Outcome,
    actor: Actor,
    object: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """:func:`record` in a transaction of its own, committed before it returns."""
    async with database.sessions() as db_session:
        event = await record(
            db_session=db_session, action=action, outcome=outcome, actor=actor, object=object, detail=detail
        )
        await db_session.commit()
        return event


async def list_events(
    *,
    db_session: AsyncSession,
    limit: int,
    before_id: int | None = None,
    actor_id: int | None = None,
    action: str | None = None,
    object: str | None = None,
    outcome: Outcome | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEvent]:
    """Newest first; ``before_id`` pages back. ``object`` matches exactly or as a prefix ending in
    ``*`` (``stream:*``); ``action`` likewise (``archive.*``)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    for column, wanted in ((AuditEvent.action, action), (AuditEvent.object, object)):
        if wanted:
            if wanted.endswith("*"):
                query = query.where(func.substr(column, 1, len(wanted) - 1) == wanted[:-1])
            else:
                query = query.where(column == wanted)
    if outcome is not None:
        query = query.where(AuditEvent.outcome == outcome.value)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    return list((await db_session.scalars(query)).all())


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One place where the audit log is not what its chain says."""

    event_id: int | None
    """The row concerned (None: the head)."""
    kind: str
    """``hash mismatch`` (the row was edited), ``link broken`` (a row before it was removed,
    inserted or edited), ``id skipped`` (rows removed), ``head mismatch`` (rows removed at the end)."""
    expected: str
    found: str


@dataclass(slots=True)
class ChainReport:
    rows: int = 0
    head: str = GENESIS_HASH
    """The last row's stored hash: note it somewhere else to catch a log rewritten whole."""
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_chain(*, db_session: AsyncSession) -> ChainReport:
    """Walk the whole log in id order, recomputing each hash and link."""
    report = ChainReport()
    expected_prev = GENESIS_HASH
    expected_id = 1
    after = 0
    while True:
        rows: Sequence[AuditEvent] = (
            await db_session.scalars(
                select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(VERIFY_BATCH)
            )
        ).all()
        if not rows:
            break
        for event in rows:
            report.rows += 1
            if event.id != expected_id:
                report.problems.append(
                    ChainProblem(event.id, "id skipped", f"id {expected_id}", f"id {event.id}")
                )
            if event.prev_hash != expected_prev:
                report.problems.append(
                    ChainProblem(event.id, "link broken", f"prev {expected_prev}", f"prev {event.prev_hash}")
                )
            recomputed = row_hash(event)
            if recomputed != event.hash:
                report.problems.append(
                    ChainProblem(event.id, "hash mismatch", f"hash {recomputed}", f"hash {event.hash}")
                )
            expected_prev = event.hash
            expected_id = event.id + 1
            after = event.id
        db_session.expunge_all()
    report.head = expected_prev
    head = (
        await db_session.execute(
            select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == HEAD_ID)
        )
    ).one_or_none()
    if head is not None and (head.last_id != expected_id - 1 or head.last_hash != expected_prev):
        report.problems.append(
            ChainProblem(
                None,
                "head mismatch",
                f"last id {head.last_id}, hash {head.last_hash}",
                f"last id {expected_id - 1}, hash {expected_prev}",
            )
        )
    return report
