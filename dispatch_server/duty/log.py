"""The duty log (值班记录, R10): entries by the people on duty, listed per day and searchable. An
entry is never changed or removed; a mistake is corrected by a new entry naming the one it
corrects, so each entry's history is a chain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction
from dispatch_server.duty import service
from dispatch_server.duty.models import LogEntry, LogKind, SignIn
from dispatch_server.duty.schemas import DutyChange
from dispatch_server.errors import Conflict, Invalid, NotFound
from dispatch_server.people.models import Person
from dispatch_server.realtime.eventlog import LoggedEvent

__all__ = ["add_log_entry", "list_log"]


async def add_log_entry(
    *,
    db_session: AsyncSession,
    author: Person,
    actor: audit.Actor,
    kind: LogKind,
    text: str,
    corrects_id: int | None,
    now: datetime,
) -> tuple[LogEntry, list[LoggedEvent]]:
    """Write an entry (in the name of ``author``, on the post they are signed in on, if any). A
    correction names the entry it corrects, which must be the newest of its chain."""
    text = text.strip()
    if not text:
        raise Invalid("a log entry needs some text")
    await service.hold(db_session)
    if corrects_id is not None:
        corrected = await db_session.get(LogEntry, corrects_id)
        if corrected is None:
            raise NotFound(f"there is no duty log entry {corrects_id}")
        newer = await db_session.scalar(select(LogEntry.id).where(LogEntry.corrects_id == corrects_id))
        if newer is not None:
            raise Conflict(f"entry {corrects_id} was corrected by entry {newer} already: correct that one")
    on_duty = await db_session.scalar(
        select(SignIn.post)
        .where(SignIn.person_id == author.id, SignIn.signed_out_at.is_(None))
        .order_by(SignIn.signed_in_at)
        .limit(1)
    )
    entry = LogEntry(at=now, author_id=author.id, post=on_duty, kind=kind, text=text, corrects_id=corrects_id)
    db_session.add(entry)
    await db_session.flush()
    entry_id = entry.id
    what = f"corrected entry {corrects_id}" if corrects_id is not None else f"logged a {kind.value}"
    logged = await service.finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_LOG,
        object=f"duty_log:{entry_id}",
        detail={"kind": kind.value, "corrects_id": corrects_id, "post": on_duty},
        events=[
            service.duty_event(
                DutyChange.LOG_ENTRY,
                f"{author.display_name} {what}",
                now,
                seat=on_duty,
                person=author,
                ref=entry_id,
            )
        ],
    )
    stored = (await db_session.scalars(select(LogEntry).where(LogEntry.id == entry_id))).one()
    return stored, logged


async def list_log(
    *,
    db_session: AsyncSession,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: LogKind | None = None,
    author_id: int | None = None,
    text: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[tuple[LogEntry, int | None]], int]:
    """Log entries in time order, each with the id of the entry that corrects it (if any); and how
    many match in all. ``text`` matches words in the entry, case-insensitively."""
    correction = aliased(LogEntry)
    query = select(LogEntry, correction.id).outerjoin(correction, correction.corrects_id == LogEntry.id)
    if since is not None:
        query = query.where(LogEntry.at >= since)
    if until is not None:
        query = query.where(LogEntry.at < until)
    if kind is not None:
        query = query.where(LogEntry.kind == kind)
    if author_id is not None:
        query = query.where(LogEntry.author_id == author_id)
    if text:
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(LogEntry.text).like(f"%{escaped}%", escape="\\"))
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(LogEntry.at, LogEntry.id).limit(limit).offset(offset)
    rows = (await db_session.execute(page)).all()
    return [(entry, corrected_by) for entry, corrected_by in rows], total
