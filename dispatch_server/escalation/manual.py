"""Incidents reported up by a person (R6): to the leader on duty (层报院领导), or to the upper
court's command center (请求上级法院执行指挥中心现场指挥).

Who may escalate: the command room (commanders, leaders, duty officers, admins), on an open
incident. To the leader on duty: whoever holds the leader-on-duty post at that moment, else the
first active leader (:func:`~dispatch_server.escalation.service.leader_on_duty`). To the upper
court: every active upper-court observer, or one named; the incident is shared with them in the
same transaction, so that they see it, watch its streams and may direct its officers.

Each escalation carries a package built at that moment (:mod:`dispatch_server.escalation.package`),
stored as sent. One transaction holds the escalation, its recipients, its timeline entries, the
shares, the audit record and the events; the caller pushes the events after the commit. The
command room gets each escalation on its channel; a recipient outside it (an upper-court observer)
on its own. A recipient acknowledges receipt once; again changes nothing.

Who sees escalations: the command room, every one of an incident; an upper-court observer, those
sent to it. Anyone else: none (an escalation one may not see is one that does not exist, 404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.errors import Conflict, Forbidden, Invalid, NotFound
from dispatch_server.escalation import package as packages
from dispatch_server.escalation.models import EscalationRecipient, EscalationTarget, IncidentEscalation
from dispatch_server.escalation.schemas import IncidentEscalationOut
from dispatch_server.escalation.service import leader_on_duty
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import IncidentStatus, Share, TimelineKind
from dispatch_server.people import service as people
from dispatch_server.people.models import WATCH_ROLES, Person, Role
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import command_channel, person_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import IncidentEscalationMessage, IncidentEscalationUpdateMessage

__all__ = [
    "ESCALATE_ROLES",
    "READ_ROLES",
    "acknowledge",
    "escalate",
    "get_visible",
    "list_for_incident",
    "list_received",
    "subject",
]

ESCALATE_ROLES = frozenset({Role.COMMANDER, Role.LEADER, Role.DUTY_OFFICER, Role.ADMIN})
"""Who may report an incident up: the command room."""
READ_ROLES = frozenset({*ESCALATE_ROLES, Role.UPPER_OBSERVER})
"""Who may see escalations: the command room, and the upper-court observers they went to."""


def subject(escalation_id: int) -> str:
    """How the event log and the timeline name an incident escalation."""
    return f"incident_escalation:{escalation_id}"


def _whom(target: EscalationTarget, recipients: list[Person]) -> str:
    names = ", ".join(person.display_name for person in recipients)
    if target is EscalationTarget.LEADER_ON_DUTY:
        return f"the leader on duty ({names})"
    return f"the upper court ({names})"


async def _recipients(
    db_session: AsyncSession,
    target: EscalationTarget,
    observer_id: int | None,
    now: datetime,
    leader_post: str | None,
) -> list[Person]:
    if target is EscalationTarget.LEADER_ON_DUTY:
        if observer_id is not None:
            raise Invalid("observer_id names an upper-court observer: it goes with the target upper_court")
        leader = await leader_on_duty(db_session=db_session, now=now, post=leader_post)
        if leader is None:
            raise Conflict("there is no leader on duty, nor any active leader, to escalate to")
        return [leader]
    if observer_id is not None:
        observer = await people.get(db_session=db_session, person_id=observer_id)
        if observer.role is not Role.UPPER_OBSERVER:
            raise Invalid(f"{observer.username} is a {observer.role.value}, not an upper-court observer")
        if not observer.active:
            raise Invalid(f"{observer.username} is disabled")
        return [observer]
    query = select(Person).where(Person.role == Role.UPPER_OBSERVER, Person.active).order_by(Person.id)
    observers = list((await db_session.scalars(query)).all())
    if not observers:
        raise Conflict(
            "no upper-court observer is registered: there is nobody at the upper court to escalate to"
        )
    return observers


async def escalate(
    *,
    db_session: AsyncSession,
    person: Person,
    incident_id: int,
    target: EscalationTarget,
    reason: str,
    now: datetime,
    links: packages.Links,
    actor: audit.Actor,
    observer_id: int | None = None,
    leader_post: str | None = None,
) -> tuple[IncidentEscalation, list[LoggedEvent]]:
    """Report the incident up, with its package; commit; return it and the events to push."""
    if person.role not in ESCALATE_ROLES:
        raise Forbidden(f"a {person.role.value} may not escalate incidents")
    reason = reason.strip()
    if not reason:
        raise Invalid("an escalation needs a reason")
    incident = await incidents.get_visible(db_session=db_session, person=person, incident_id=incident_id)
    if incident.status is not IncidentStatus.OPEN:
        raise Conflict(f"incident {incident.id} is closed: reopen it to escalate it")
    await eventlog.hold(db_session=db_session)
    recipients = await _recipients(db_session, target, observer_id, now, leader_post)
    escalation = IncidentEscalation(
        incident_id=incident.id,
        target=target,
        reason=reason,
        requested_by_id=person.id,
        requested_at=now,
        package="",
        package_sha256="",
    )
    escalation.recipients = [EscalationRecipient(person_id=recipient.id) for recipient in recipients]
    db_session.add(escalation)
    await db_session.flush()
    escalation_id = escalation.id
    incidents.add_entry(
        db_session,
        incident.id,
        TimelineKind.ESCALATED,
        f"{person.display_name} escalated the incident to {_whom(target, recipients)}: {reason}",
        at=now,
        actor_id=person.id,
        subject=subject(escalation_id),
    )
    if target is EscalationTarget.UPPER_COURT:
        await incidents.add_shares(db_session, incident.id, recipients, actor=person, now=now)
    await db_session.flush()
    package = await packages.for_incident(db_session=db_session, incident=incident, now=now, links=links)
    escalation.package, escalation.package_sha256 = packages.stored(package)
    await audit.record(
        db_session=db_session,
        action=AuditAction.INCIDENT_ESCALATE,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=f"incident:{incident.id}",
        detail={
            "escalation": escalation_id,
            "target": target.value,
            "recipients": [recipient.id for recipient in recipients],
            "reason": reason,
            "package_sha256": escalation.package_sha256,
        },
    )
    await db_session.flush()
    events = await _record(db_session, escalation_id, IncidentEscalationMessage)
    await db_session.commit()
    return await _get(db_session, escalation_id), events


async def acknowledge(
    *,
    db_session: AsyncSession,
    person: Person,
    incident_id: int,
    escalation_id: int,
    now: datetime,
    actor: audit.Actor,
) -> tuple[IncidentEscalation, list[LoggedEvent]]:
    """A recipient acknowledges receiving it. Once: again returns it as it stands, pushes nothing."""
    escalation = await get_visible(
        db_session=db_session, person=person, incident_id=incident_id, escalation_id=escalation_id
    )
    if person.id not in {recipient.person_id for recipient in escalation.recipients}:
        raise Forbidden(f"escalation {escalation_id} was not sent to you: only its recipients acknowledge it")
    await eventlog.hold(db_session=db_session)
    changed: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
        update(EscalationRecipient)
        .where(
            EscalationRecipient.escalation_id == escalation_id,
            EscalationRecipient.person_id == person.id,
            EscalationRecipient.acknowledged_at.is_(None),
        )
        .values(acknowledged_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        await db_session.rollback()
        return await _get(db_session, escalation_id), []
    incidents.add_entry(
        db_session,
        incident_id,
        TimelineKind.ESCALATION_RECEIVED,
        f"{person.display_name} acknowledged receiving the escalation",
        at=now,
        actor_id=person.id,
        person_id=person.id,
        subject=subject(escalation_id),
    )
    await audit.record(
        db_session=db_session,
        action=AuditAction.INCIDENT_ESCALATION_ACK,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=subject(escalation_id),
        detail={"incident": incident_id},
    )
    events = await _record(db_session, escalation_id, IncidentEscalationUpdateMessage)
    await db_session.commit()
    return await _get(db_session, escalation_id), events


def _visible(query: Select[Any], person: Person) -> Select[Any]:
    if person.role in ESCALATE_ROLES:
        return query
    received = select(EscalationRecipient.escalation_id).where(EscalationRecipient.person_id == person.id)
    return query.where(IncidentEscalation.id.in_(received))


async def get_visible(
    *, db_session: AsyncSession, person: Person, incident_id: int, escalation_id: int
) -> IncidentEscalation:
    """The escalation of this incident, if this person may see it; NotFound otherwise."""
    await incidents.get_visible(db_session=db_session, person=person, incident_id=incident_id)
    query = _visible(select(IncidentEscalation), person).where(
        IncidentEscalation.id == escalation_id, IncidentEscalation.incident_id == incident_id
    )
    escalation = await db_session.scalar(query.execution_options(populate_existing=True))
    if escalation is None:
        raise NotFound(f"incident {incident_id} has no escalation {escalation_id}")
    return escalation


async def list_for_incident(
    *, db_session: AsyncSession, person: Person, incident_id: int, limit: int = 50, offset: int = 0
) -> tuple[list[IncidentEscalation], int]:
    """One page of the incident's escalations this person may see, newest first, and how many."""
    await incidents.get_visible(db_session=db_session, person=person, incident_id=incident_id)
    query = _visible(select(IncidentEscalation), person).where(IncidentEscalation.incident_id == incident_id)
    return await _page(db_session, query, limit, offset)


async def list_received(
    *, db_session: AsyncSession, person: Person, pending: bool = False, limit: int = 50, offset: int = 0
) -> tuple[list[IncidentEscalation], int]:
    """One page of the escalations sent to this person, newest first (``pending``: only those it
    has not acknowledged yet), and how many. Those of incidents no longer shared with it are left out."""
    mine = select(EscalationRecipient.escalation_id).where(EscalationRecipient.person_id == person.id)
    if pending:
        mine = mine.where(EscalationRecipient.acknowledged_at.is_(None))
    query = select(IncidentEscalation).where(IncidentEscalation.id.in_(mine))
    if person.role is Role.UPPER_OBSERVER:
        shared = select(Share.incident_id).where(Share.person_id == person.id)
        query = query.where(IncidentEscalation.incident_id.in_(shared))
    return await _page(db_session, query, limit, offset)


async def _page(
    db_session: AsyncSession, query: Select[Any], limit: int, offset: int
) -> tuple[list[IncidentEscalation], int]:
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(IncidentEscalation.id.desc()).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).unique().all()), total


async def _get(db_session: AsyncSession, escalation_id: int) -> IncidentEscalation:
    query = select(IncidentEscalation).where(IncidentEscalation.id == escalation_id)
    return (await db_session.scalars(query.execution_options(populate_existing=True))).one()


async def _record(
    db_session: AsyncSession,
    escalation_id: int,
    message_type: type[IncidentEscalationMessage | IncidentEscalationUpdateMessage],
) -> list[LoggedEvent]:
    """Log the escalation as it stands: for the command room, and for each recipient outside it."""
    escalation = await _get(db_session, escalation_id)
    message = message_type(escalation=IncidentEscalationOut.model_validate(escalation))
    channels = [command_channel()]
    channels += [
        person_channel(recipient.person_id)
        for recipient in escalation.recipients
        if recipient.person.role not in WATCH_ROLES
    ]
    return await eventlog.record(
        db_session=db_session,
        events=[LoggedEvent(channel, message, subject(escalation_id)) for channel in channels],
    )
