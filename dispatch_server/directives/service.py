"""Directives (R4): issue, deliver, acknowledge.

SQL first: each change and the events that report it commit in one transaction; the caller pushes
the returned events afterwards (:func:`dispatch_server.realtime.eventlog.publish`). A target's
events carry only its own entry in ``targets``; the command room's carry them all.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.db import utcnow
from dispatch_server.directives.models import Directive, DirectiveTarget, TargetState
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.errors import Invalid, NotFound
from dispatch_server.people import service as people
from dispatch_server.people.models import COMMAND_ROLES, Person
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import command_channel, person_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import DirectiveMessage, DirectiveUpdateMessage

__all__ = [
    "acknowledge",
    "for_target",
    "get",
    "issue",
    "list_for",
    "mark_delivered",
    "pending_for",
    "pending_messages",
    "subject",
]

RECENT = 100


async def issue(
    *,
    db_session: AsyncSession,
    issuer: Person,
    target_ids: list[int],
    text: str,
    ack_deadline_seconds: int,
    now: datetime | None = None,
) -> tuple[Directive, list[LoggedEvent]]:
    """Store a directive and its events (one for each target, one for the command room)."""
    text = text.strip()
    if not text:
        raise Invalid("a directive needs some text")
    targets = await people.get_many(db_session=db_session, person_ids=target_ids)
    if any(target.id == issuer.id for target in targets):
        raise Invalid("a directive cannot be addressed to its issuer")
    created = now or utcnow()
    directive = Directive(
        text=text,
        issuer_id=issuer.id,
        created_at=created,
        deadline=created + timedelta(seconds=ack_deadline_seconds),
    )
    directive.targets = [DirectiveTarget(person_id=target.id) for target in targets]
    db_session.add(directive)
    await db_session.flush()
    directive = await get(db_session=db_session, directive_id=directive.id)
    body = DirectiveOut.model_validate(directive)
    events = [
        LoggedEvent(
            person_channel(target.person_id),
            DirectiveMessage(directive=for_target(body, target.person_id)),
            subject(directive.id),
        )
        for target in directive.targets
    ]
    events.append(
        LoggedEvent(command_channel(), DirectiveUpdateMessage(directive=body), subject(directive.id))
    )
    logged = await eventlog.record(db_session=db_session, events=events)
    await db_session.commit()
    return directive, logged


def subject(directive_id: int) -> str:
    """How the event log names a directive."""
    return f"directive:{directive_id}"


def for_target(body: DirectiveOut, person_id: int) -> DirectiveOut:
    """The directive as one of its targets sees it: with only its own entry in ``targets``."""
    return body.model_copy(update={"targets": [t for t in body.targets if t.person.id == person_id]})


async def get(*, db_session: AsyncSession, directive_id: int) -> Directive:
    db_session.expire_all()
    directive = await db_session.scalar(select(Directive).where(Directive.id == directive_id))
    if directive is None:
        raise NotFound(f"there is no directive {directive_id}")
    return directive


async def list_for(*, db_session: AsyncSession, person: Person) -> list[Directive]:
    """Commanders see the recent directives; anyone else those addressed to them."""
    query = select(Directive).order_by(Directive.id.desc()).limit(RECENT)
    if person.role not in COMMAND_ROLES:
        query = query.join(DirectiveTarget).where(DirectiveTarget.person_id == person.id)
    return list((await db_session.scalars(query)).unique().all())


async def pending_for(*, db_session: AsyncSession, person_id: int) -> list[Directive]:
    """Directives this person has not acknowledged yet, oldest first."""
    query = (
        select(Directive)
        .join(DirectiveTarget)
        .where(DirectiveTarget.person_id == person_id, DirectiveTarget.state != TargetState.ACKNOWLEDGED)
        .order_by(Directive.id)
    )
    return list((await db_session.scalars(query)).unique().all())


async def pending_messages(*, db_session: AsyncSession, person_id: int) -> list[DirectiveMessage]:
    """What this person has not acknowledged yet, oldest first, as its target sees it now, each with
    the id of the event that first carried it (None when the log has none)."""
    pending = await pending_for(db_session=db_session, person_id=person_id)
    event_ids = await eventlog.find(
        db_session=db_session,
        channel=person_channel(person_id),
        type="directive",
        subjects=[subject(directive.id) for directive in pending],
    )
    return [
        DirectiveMessage(
            directive=for_target(DirectiveOut.model_validate(directive), person_id),
            event_id=event_ids.get(subject(directive.id)),
        )
        for directive in pending
    ]


async def _transition(
    db_session: AsyncSession,
    directive_id: int,
    person_id: int,
    values: dict[str, object],
    *,
    from_states: tuple[TargetState, ...],
) -> list[LoggedEvent]:
    """Move one target's state with a single conditional UPDATE, so that concurrent deliveries
    and acknowledgements never overwrite each other, and log the change in the same transaction.
    Returns the committed events: none if nothing changed."""
    result: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
        update(DirectiveTarget)
        .where(
            DirectiveTarget.directive_id == directive_id,
            DirectiveTarget.person_id == person_id,
            DirectiveTarget.state.in_(from_states),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        await eventlog.hold(db_session=db_session)
        directive = await get(db_session=db_session, directive_id=directive_id)
        body = DirectiveOut.model_validate(directive)
        logged = await eventlog.record(
            db_session=db_session,
            events=[
                LoggedEvent(command_channel(), DirectiveUpdateMessage(directive=body), subject(directive_id)),
                LoggedEvent(
                    person_channel(person_id),
                    DirectiveUpdateMessage(directive=for_target(body, person_id)),
                    subject(directive_id),
                ),
            ],
        )
        await db_session.commit()
        return logged
    await db_session.rollback()
    exists = await db_session.scalar(
        select(DirectiveTarget.id).where(
            DirectiveTarget.directive_id == directive_id, DirectiveTarget.person_id == person_id
        )
    )
    if exists is None:
        raise NotFound(f"there is no directive {directive_id} addressed to you")
    return []


async def mark_delivered(
    *, db_session: AsyncSession, directive_id: int, person_id: int
) -> list[LoggedEvent]:
    """Record that the target's device received it; the events to push if that changed anything."""
    values = {"state": TargetState.DELIVERED, "delivered_at": utcnow()}
    return await _transition(db_session, directive_id, person_id, values, from_states=(TargetState.SENT,))


async def acknowledge(
    *, db_session: AsyncSession, directive_id: int, person_id: int
) -> tuple[Directive, list[LoggedEvent]]:
    """Acknowledge for this target. Idempotent: a second time changes nothing and logs nothing."""
    now = utcnow()
    values = {
        "state": TargetState.ACKNOWLEDGED,
        "acknowledged_at": now,
        "delivered_at": func.coalesce(DirectiveTarget.delivered_at, now),
    }
    logged = await _transition(
        db_session, directive_id, person_id, values, from_states=(TargetState.SENT, TargetState.DELIVERED)
    )
    return await get(db_session=db_session, directive_id=directive_id), logged
