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
from dispatch_server.errors import Conflict, Invalid, NotFound
from dispatch_server.escalation import service as escalation
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import DirectiveIncident, IncidentStatus, TimelineKind
from dispatch_server.people import service as people
from dispatch_server.people.models import COMMAND_ROLES, Person, Role
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
    incident_id: int | None = None,
    now: datetime | None = None,
) -> tuple[Directive, list[LoggedEvent]]:
    """Store a directive and its events (one for each target, one for the command room).

    With an ``incident_id`` it belongs to that (open) incident and goes on its timeline; with no
    ``target_ids`` as well, it goes to everyone on the incident. Each target's acknowledgement
    deadline starts an escalation timer."""
    text = text.strip()
    if not text:
        raise Invalid("a directive needs some text")
    incident = None
    if incident_id is not None:
        incident = await incidents.get_visible(db_session=db_session, person=issuer, incident_id=incident_id)
        if incident.status is not IncidentStatus.OPEN:
            raise Conflict(f"incident {incident_id} is closed: reopen it to direct it")
        if not target_ids:
            target_ids = [officer.id for officer in incident.officers]
            if not target_ids:
                raise Invalid(f"incident {incident_id} has no officers to direct")
    elif not target_ids:
        raise Invalid("name the targets (target_ids), or an incident_id to reach everyone on it")
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
    escalation.arm(db_session, directive)
    if incident is not None:
        db_session.add(DirectiveIncident(directive_id=directive.id, incident_id=incident.id))
        names = ", ".join(target.display_name for target in targets)
        incidents.add_entry(
            db_session,
            incident.id,
            TimelineKind.DIRECTIVE,
            f"{issuer.display_name} to {names}: {text}",
            at=created,
            actor_id=issuer.id,
            directive_id=directive.id,
        )
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


async def list_for(
    *, db_session: AsyncSession, person: Person, incident_id: int | None = None
) -> list[Directive]:
    """Commanders see the recent directives; an upper-court observer those of an incident shared
    with it; anyone else those addressed to them. Optionally only one incident's."""
    query = select(Directive).order_by(Directive.id.desc()).limit(RECENT)
    if incident_id is not None:
        await incidents.get_visible(db_session=db_session, person=person, incident_id=incident_id)
        query = query.join(DirectiveIncident).where(DirectiveIncident.incident_id == incident_id)
    observer = person.role is Role.UPPER_OBSERVER and incident_id is not None
    if person.role not in COMMAND_ROLES and not observer:
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
        if values.get("state") is TargetState.ACKNOWLEDGED:
            await _acknowledged(db_session, directive_id, person_id, values["acknowledged_at"])  # type: ignore[arg-type]
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


async def _acknowledged(db_session: AsyncSession, directive_id: int, person_id: int, at: datetime) -> None:
    """Stop the target's escalation timer; note it on the incident's timeline."""
    await escalation.disarm(db_session, directive_id=directive_id, person_id=person_id)
    incident = await incidents.incident_of_directive(db_session=db_session, directive_id=directive_id)
    if incident is not None:
        person = await people.get(db_session=db_session, person_id=person_id)
        incidents.add_entry(
            db_session,
            incident.id,
            TimelineKind.ACKNOWLEDGED,
            f"{person.display_name} acknowledged directive {directive_id}",
            at=at,
            actor_id=person_id,
            person_id=person_id,
            directive_id=directive_id,
        )


async def mark_delivered(
    *, db_session: AsyncSession, directive_id: int, person_id: int, now: datetime | None = None
) -> list[LoggedEvent]:
    """Record that the target's device received it; the events to push if that changed anything."""
    values = {"state": TargetState.DELIVERED, "delivered_at": now or utcnow()}
    return await _transition(db_session, directive_id, person_id, values, from_states=(TargetState.SENT,))


async def acknowledge(
    *, db_session: AsyncSession, directive_id: int, person_id: int, now: datetime | None = None
) -> tuple[Directive, list[LoggedEvent]]:
    """Acknowledge for this target. Idempotent: a second time changes nothing and logs nothing."""
    now = now or utcnow()
    values = {
        "state": TargetState.ACKNOWLEDGED,
        "acknowledged_at": now,
        "delivered_at": func.coalesce(DirectiveTarget.delivered_at, now),
    }
    logged = await _transition(
        db_session, directive_id, person_id, values, from_states=(TargetState.SENT, TargetState.DELIVERED)
    )
    return await get(db_session=db_session, directive_id=directive_id), logged
