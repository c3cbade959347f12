"""Directives (R4, R6): issue, deliver, acknowledge, report done.

A directive goes to people, to a unit (everyone in it and its sub-units) or to everyone on an
incident; units and incidents are expanded to one target row per person when it is issued, and
the unit or incident is kept on the directive. Each target moves forward only: sent -> delivered
-> acknowledged -> done, each step one conditional UPDATE. It comes from this center or from the
upper court: an upper-court observer may direct the officers of an incident shared with it.

SQL first: each change, its audit record (R17: issuing, acknowledging, reporting done; not the
device's delivery receipt) and the events that report it commit in one transaction; the caller pushes
the returned events afterwards (:func:`dispatch_server.realtime.eventlog.publish`). A target's
events carry only its own entry in ``targets``; the command room's carry them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.db import utcnow
from dispatch_server.directives.models import (
    OPEN_STATES,
    Directive,
    DirectiveOrigin,
    DirectiveTarget,
    TargetScope,
    TargetState,
)
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.errors import Conflict, Forbidden, Invalid, NotFound
from dispatch_server.escalation import service as escalation
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import DirectiveIncident, Incident, IncidentStatus, TimelineKind
from dispatch_server.people import service as people
from dispatch_server.people.models import COMMAND_ROLES, Person, Role
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import command_channel, person_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import DirectiveMessage, DirectiveUpdateMessage
from dispatch_server.units import service as units
from dispatch_server.units.models import Unit

__all__ = [
    "ISSUE_ROLES",
    "acknowledge",
    "complete",
    "describe",
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
ISSUE_ROLES = frozenset({*COMMAND_ROLES, Role.UPPER_OBSERVER})
"""Who may issue directives: the command room, and an upper-court observer on a shared incident."""


def describe(directive: Directive, now: datetime | None = None) -> DirectiveOut:
    """The directive as the API shows it, with who is overdue at ``now`` (the app's clock)."""
    return DirectiveOut.model_validate(directive, context={"now": now or utcnow()})


def _origin(issuer: Person, origin: DirectiveOrigin | None) -> DirectiveOrigin:
    if issuer.role is Role.UPPER_OBSERVER:
        if origin is DirectiveOrigin.CENTER:
            raise Invalid("an upper-court observer's directives come from the upper court")
        return DirectiveOrigin.UPPER_COURT
    return origin or DirectiveOrigin.CENTER


async def _incident_for(db_session: AsyncSession, issuer: Person, incident_id: int | None) -> Incident | None:
    """The open incident the directive is issued on. An upper-court observer must name one shared
    with it (403 otherwise, the same for one that does not exist)."""
    if issuer.role is Role.UPPER_OBSERVER:
        if incident_id is None:
            raise Forbidden("an upper-court observer directs only on an incident shared with it: give its id")
        try:
            incident = await incidents.get_visible(
                db_session=db_session, person=issuer, incident_id=incident_id
            )
        except NotFound:
            raise Forbidden(f"incident {incident_id} is not shared with you") from None
    elif incident_id is not None:
        incident = await incidents.get_visible(db_session=db_session, person=issuer, incident_id=incident_id)
    else:
        return None
    if incident.status is not IncidentStatus.OPEN:
        raise Conflict(f"incident {incident.id} is closed: reopen it to direct it")
    return incident


async def _targets(
    db_session: AsyncSession,
    issuer: Person,
    *,
    target_ids: Sequence[int],
    unit_id: int | None,
    incident: Incident | None,
) -> tuple[TargetScope, list[Person], Unit | None]:
    """Expand what the issuer named to the people it reaches now."""
    if target_ids and unit_id is not None:
        raise Invalid("name either the people (target_ids) or a unit_id, not both")
    observer = issuer.role is Role.UPPER_OBSERVER
    if unit_id is not None:
        if observer:
            raise Forbidden("an upper-court observer directs the officers on a shared incident, not units")
        unit = await units.get(db_session=db_session, unit_id=unit_id)
        members = [
            p for p in await units.members(db_session=db_session, unit_id=unit.id) if p.id != issuer.id
        ]
        if not members:
            raise Invalid(f"unit {unit.id} ({unit.name}) has nobody in it to direct")
        return TargetScope.UNIT, members, unit
    if target_ids:
        targets = await people.get_many(db_session=db_session, person_ids=target_ids)
        if any(target.id == issuer.id for target in targets):
            raise Invalid("a directive cannot be addressed to its issuer")
        if observer and incident is not None:
            on_it = {officer.id for officer in incident.officers}
            outside = [target.username for target in targets if target.id not in on_it]
            if outside:
                raise Forbidden(
                    f"an upper-court observer directs the officers on incident {incident.id}; "
                    f"not on it: {', '.join(outside)}"
                )
        return TargetScope.PEOPLE, targets, None
    if incident is not None:
        officers = [officer for officer in incident.officers if officer.active]
        if not officers:
            raise Invalid(f"incident {incident.id} has no officers to direct")
        return TargetScope.INCIDENT, officers, None
    raise Invalid("name the targets (target_ids), a unit_id, or an incident_id to reach everyone on it")


async def issue(
    *,
    db_session: AsyncSession,
    issuer: Person,
    target_ids: Sequence[int],
    text: str,
    ack_deadline_seconds: int,
    incident_id: int | None = None,
    unit_id: int | None = None,
    complete_by: datetime | None = None,
    origin: DirectiveOrigin | None = None,
    now: datetime | None = None,
    actor: audit.Actor,
) -> tuple[Directive, list[LoggedEvent]]:
    """Store a directive and its events (one for each target, one for the command room).

    Its targets are ``target_ids``, or everyone in the unit ``unit_id`` and its sub-units, or (with
    only an ``incident_id``) everyone on the incident; with an ``incident_id`` it belongs to that
    open incident and goes on its timeline. Each target's acknowledgement deadline starts an
    escalation timer."""
    text = text.strip()
    if not text:
        raise Invalid("a directive needs some text")
    created = now or utcnow()
    deadline = created + timedelta(seconds=ack_deadline_seconds)
    if complete_by is not None:
        if complete_by.tzinfo is None:
            raise Invalid("complete_by needs a time zone (e.g. 2026-03-01T10:00:00+08:00)")
        if complete_by <= created:
            raise Invalid(f"the completion deadline {complete_by.isoformat()} is in the past")
        if complete_by < deadline:
            raise Invalid("the completion deadline comes before the acknowledgement deadline")
    source = _origin(issuer, origin)
    incident = await _incident_for(db_session, issuer, incident_id)
    scope, targets, unit = await _targets(
        db_session, issuer, target_ids=target_ids, unit_id=unit_id, incident=incident
    )
    audited = {
        "scope": scope.value,
        "target_ids": [target.id for target in targets],
        "incident_id": incident.id if incident is not None else None,
        "unit_id": unit.id if unit is not None else None,
        "origin": source.value,
    }
    directive = Directive(
        text=text,
        issuer_id=issuer.id,
        created_at=created,
        deadline=deadline,
        complete_by=complete_by,
        scope=scope,
        unit_id=unit.id if unit is not None else None,
        origin=source,
    )
    directive.targets = [DirectiveTarget(person_id=target.id) for target in targets]
    db_session.add(directive)
    await db_session.flush()
    escalation.arm(db_session, directive)
    if incident is not None:
        db_session.add(DirectiveIncident(directive_id=directive.id, incident_id=incident.id))
        names = ", ".join(target.display_name for target in targets)
        whom = f"unit {unit.name} ({names})" if unit is not None else names
        by = (
            f"{issuer.display_name} (upper court)"
            if source is DirectiveOrigin.UPPER_COURT
            else issuer.display_name
        )
        incidents.add_entry(
            db_session,
            incident.id,
            TimelineKind.DIRECTIVE,
            f"{by} to {whom}: {text}",
            at=created,
            actor_id=issuer.id,
            directive_id=directive.id,
        )
    await db_session.flush()
    directive = await get(db_session=db_session, directive_id=directive.id)
    body = describe(directive, created)
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
    # After the event log: its lock is taken before the audit log's, as everywhere.
    await audit.record(
        db_session=db_session,
        action=AuditAction.DIRECTIVE_ISSUE,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=subject(body.id),
        detail=audited,
    )
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
    with it; anyone else those addressed to them or issued by them. Optionally only one incident's."""
    query = select(Directive).order_by(Directive.id.desc()).limit(RECENT)
    if incident_id is not None:
        await incidents.get_visible(db_session=db_session, person=person, incident_id=incident_id)
        query = query.join(DirectiveIncident).where(DirectiveIncident.incident_id == incident_id)
    observer = person.role is Role.UPPER_OBSERVER and incident_id is not None
    if person.role not in COMMAND_ROLES and not observer:
        addressed = select(DirectiveTarget.directive_id).where(DirectiveTarget.person_id == person.id)
        query = query.where(or_(Directive.id.in_(addressed), Directive.issuer_id == person.id))
    return list((await db_session.scalars(query)).unique().all())


async def pending_for(*, db_session: AsyncSession, person_id: int) -> list[Directive]:
    """Directives this person has not acknowledged yet, oldest first."""
    query = (
        select(Directive)
        .join(DirectiveTarget)
        .where(DirectiveTarget.person_id == person_id, DirectiveTarget.state.in_(OPEN_STATES))
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
            directive=for_target(describe(directive), person_id),
            event_id=event_ids.get(subject(directive.id)),
        )
        for directive in pending
    ]


async def _transition(
    db_session: AsyncSession,
    directive_id: int,
    person_id: int,
    values: dict[str, Any],
    *,
    from_states: tuple[TargetState, ...],
    now: datetime,
    audited: tuple[audit.Actor, AuditAction] | None = None,
) -> tuple[list[LoggedEvent], TargetState]:
    """Move one target's state with a single conditional UPDATE, so that concurrent deliveries,
    acknowledgements and reports never overwrite each other, and log the change (and audit it as
    ``audited`` says) in the same transaction. Returns the committed events (none if nothing
    changed) and the target's state."""
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
        state: TargetState = values["state"]
        if state is TargetState.ACKNOWLEDGED:
            await _acknowledged(db_session, directive_id, person_id, values["acknowledged_at"])
        elif state is TargetState.DONE:
            await _done(db_session, directive_id, person_id, values["done_at"])
        if audited is not None:
            actor, action = audited
            await audit.record(
                db_session=db_session,
                action=action,
                outcome=Outcome.SUCCESS,
                actor=actor,
                object=subject(directive_id),
            )
        directive = await get(db_session=db_session, directive_id=directive_id)
        body = describe(directive, now)
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
        return logged, state
    await db_session.rollback()
    current = await db_session.scalar(
        select(DirectiveTarget.state).where(
            DirectiveTarget.directive_id == directive_id, DirectiveTarget.person_id == person_id
        )
    )
    if current is None:
        raise NotFound(f"there is no directive {directive_id} addressed to you")
    return [], current


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


async def _done(db_session: AsyncSession, directive_id: int, person_id: int, at: datetime) -> None:
    """Note on the incident's timeline that the target reported it done."""
    incident = await incidents.incident_of_directive(db_session=db_session, directive_id=directive_id)
    if incident is not None:
        person = await people.get(db_session=db_session, person_id=person_id)
        incidents.add_entry(
            db_session,
            incident.id,
            TimelineKind.DONE,
            f"{person.display_name} reported directive {directive_id} done",
            at=at,
            actor_id=person_id,
            person_id=person_id,
            directive_id=directive_id,
        )


async def mark_delivered(
    *, db_session: AsyncSession, directive_id: int, person_id: int, now: datetime | None = None
) -> list[LoggedEvent]:
    """Record that the target's device received it; the events to push if that changed anything."""
    now = now or utcnow()
    values = {"state": TargetState.DELIVERED, "delivered_at": now}
    logged, _state = await _transition(
        db_session, directive_id, person_id, values, from_states=(TargetState.SENT,), now=now
    )
    return logged


async def acknowledge(
    *,
    db_session: AsyncSession,
    directive_id: int,
    person_id: int,
    actor: audit.Actor,
    now: datetime | None = None,
) -> tuple[Directive, list[LoggedEvent]]:
    """Acknowledge for this target. Idempotent: a second time changes nothing and logs nothing."""
    now = now or utcnow()
    values = {
        "state": TargetState.ACKNOWLEDGED,
        "acknowledged_at": now,
        "delivered_at": func.coalesce(DirectiveTarget.delivered_at, now),
    }
    audited = (actor, AuditAction.DIRECTIVE_ACKNOWLEDGE)
    logged, _state = await _transition(
        db_session, directive_id, person_id, values, from_states=OPEN_STATES, now=now, audited=audited
    )
    return await get(db_session=db_session, directive_id=directive_id), logged


async def complete(
    *,
    db_session: AsyncSession,
    directive_id: int,
    person_id: int,
    actor: audit.Actor,
    now: datetime | None = None,
) -> tuple[Directive, list[LoggedEvent]]:
    """The target reports it done. Only after acknowledging it (409 before); idempotent: a second
    report changes nothing and logs nothing."""
    now = now or utcnow()
    values = {"state": TargetState.DONE, "done_at": now}
    audited = (actor, AuditAction.DIRECTIVE_DONE)
    logged, state = await _transition(
        db_session,
        directive_id,
        person_id,
        values,
        from_states=(TargetState.ACKNOWLEDGED,),
        now=now,
        audited=audited,
    )
    if state in OPEN_STATES:
        raise Conflict(f"acknowledge directive {directive_id} before reporting it done")
    return await get(db_session=db_session, directive_id=directive_id), logged
