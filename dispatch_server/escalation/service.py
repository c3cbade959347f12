"""Escalation (R4, R6): deadlines that pass without an acknowledgement.

Each directive target gets an :class:`~dispatch_server.escalation.models.AckTimer` when the
directive is issued, due at its deadline; acknowledging stops it. When it falls due, the first
escalation goes to the incident's commander (else the directive's issuer) and the timer is set
``leader_after`` later; when that falls due too, the second goes to the leader on duty (whoever is
signed in, else rostered, on the ``duty.leader_post`` post then; with nobody there, the first active
person with the role leader) and the timer stops.

Exactly once, with any number of dispatch processes: :func:`fire_due` takes the event log's lock
(which serialises it with acknowledgements and with other processes' runs) and claims each timer
with a conditional UPDATE on its level; a claim that changes no row belongs to someone else.
A unique (directive, target, level) constraint on escalations backs this up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts import overdue as ack_overdue
from dispatch_server.directives.models import Directive, DirectiveTarget, TargetState
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.duty import service as duty
from dispatch_server.escalation import package as packages
from dispatch_server.escalation.models import LEVELS, AckTimer, Escalation, EscalationLevel
from dispatch_server.escalation.schemas import EscalationOut
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import TimelineKind
from dispatch_server.people.models import Person, Role
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import command_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import EscalationMessage

__all__ = ["arm", "disarm", "fire_due", "leader_on_duty", "list_escalations", "next_due"]

BATCH = 100
"""Timers claimed per transaction."""


def arm(db_session: AsyncSession, directive: Directive) -> None:
    """Start a timer for each of a new directive's targets (in the caller's transaction)."""
    for target in directive.targets:
        db_session.add(
            AckTimer(
                target_id=target.id,
                directive_id=directive.id,
                person_id=target.person_id,
                level=0,
                due_at=directive.deadline,
            )
        )


async def disarm(db_session: AsyncSession, *, directive_id: int, person_id: int) -> None:
    """The target acknowledged: nothing more to escalate (in the caller's transaction)."""
    await db_session.execute(
        update(AckTimer)
        .where(AckTimer.directive_id == directive_id, AckTimer.person_id == person_id)
        .values(due_at=None)
        .execution_options(synchronize_session=False)
    )


async def next_due(*, db_session: AsyncSession) -> datetime | None:
    """When the next timer falls due (None: no timer is running)."""
    return await db_session.scalar(select(func.min(AckTimer.due_at)))


async def leader_on_duty(
    *, db_session: AsyncSession, now: datetime | None = None, post: str | None = None
) -> Person | None:
    """The leader escalations go to: who holds the leader-on-duty ``post`` at ``now`` (signed in,
    else rostered; R10), else the first active leader."""
    if post is not None and now is not None:
        on_duty = await duty.holder(db_session=db_session, seat=post, now=now)
        if on_duty is not None and on_duty.active:
            return on_duty
    query = select(Person).where(Person.role == Role.LEADER, Person.active).order_by(Person.id).limit(1)
    return await db_session.scalar(query)


async def fire_due(
    *,
    db_session: AsyncSession,
    now: datetime,
    leader_after: timedelta,
    node: str = "",
    leader_post: str | None = None,
) -> list[LoggedEvent]:
    """Fire every escalation due at ``now`` that no one has fired yet; commit; return the events
    to push (one ``escalation`` for the command room each). Second-level escalations go to the
    holder of ``leader_post`` (see :func:`leader_on_duty`)."""
    await eventlog.hold(db_session=db_session)
    due = (
        await db_session.execute(
            select(AckTimer.target_id, AckTimer.level, AckTimer.due_at)
            .join(DirectiveTarget, DirectiveTarget.id == AckTimer.target_id)
            .where(
                AckTimer.due_at.is_not(None),
                AckTimer.due_at <= now,
                DirectiveTarget.state != TargetState.ACKNOWLEDGED,
            )
            .order_by(AckTimer.due_at, AckTimer.target_id)
            .limit(BATCH)
        )
    ).all()
    events: list[LoggedEvent] = []
    overdue: list[LoggedEvent] = []  # ack_overdue alerts: logged by the alerts service already
    for target_id, level, due_at in due:
        if level >= len(LEVELS) or due_at is None:
            continue
        next_level = level + 1
        claimed: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
            update(AckTimer)
            .where(AckTimer.target_id == target_id, AckTimer.level == level, AckTimer.due_at.is_not(None))
            .values(level=next_level, due_at=now + leader_after if next_level < len(LEVELS) else None)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            continue  # fired by another process, or acknowledged meanwhile
        events.extend(
            await _escalate(db_session, target_id, LEVELS[level], due_at, now, node, overdue, leader_post)
        )
    if not events:
        await db_session.rollback()
        return []
    logged = await eventlog.record(db_session=db_session, events=events)
    await db_session.commit()
    return logged + overdue


async def _escalate(
    db_session: AsyncSession,
    target_id: int,
    level: EscalationLevel,
    due_at: datetime,
    now: datetime,
    node: str,
    overdue: list[LoggedEvent],
    leader_post: str | None = None,
) -> list[LoggedEvent]:
    target = await db_session.get(DirectiveTarget, target_id)
    assert target is not None
    directive_id, person_id, person_name = target.directive_id, target.person_id, target.person.display_name
    incident = await incidents.incident_of_directive(db_session=db_session, directive_id=directive_id)
    incident_id = incident.id if incident is not None else None
    directive = (await db_session.scalars(select(Directive).where(Directive.id == directive_id))).one()
    if level is EscalationLevel.COMMANDER:
        to_id: int | None = (
            incident.commander_id if incident is not None and incident.commander_id else directive.issuer_id
        )
    else:
        leader = await leader_on_duty(db_session=db_session, now=now, post=leader_post)
        to_id = leader.id if leader is not None else None
    added = Escalation(
        directive_id=directive_id,
        person_id=person_id,
        level=level,
        to_person_id=to_id,
        incident_id=incident_id,
        due_at=due_at,
        fired_at=now,
        fired_by=node[:128],
    )
    db_session.add(added)
    await db_session.flush()
    escalation_id = added.id
    db_session.expire_all()  # the timers changed behind the session's back (Core UPDATE)
    escalation = (await db_session.scalars(select(Escalation).where(Escalation.id == escalation_id))).one()
    directive = (await db_session.scalars(select(Directive).where(Directive.id == directive_id))).one()
    if incident_id is not None:
        incident = await incidents.get(db_session=db_session, incident_id=incident_id)
    package = packages.for_missed_ack(
        directive=directive, target=escalation.person, incident=incident, now=now
    )
    escalation.package = packages.stored(package)[0]
    recipient = escalation.to_person.display_name if escalation.to_person else f"nobody (no {level.value})"
    if incident_id is not None:
        incidents.add_entry(
            db_session,
            incident_id,
            TimelineKind.ESCALATION,
            f"{person_name} did not acknowledge directive {directive_id} in time: escalated to {recipient}",
            at=now,
            person_id=person_id,
            directive_id=directive_id,
            escalation_id=escalation_id,
        )
    overdue += await ack_overdue.raise_ack_overdue(
        db_session=db_session,
        directive_id=directive_id,
        person_id=person_id,
        message=f"{person_name} has not acknowledged directive {directive_id}: escalated to {recipient}",
        incident_id=incident_id,
        now=now,
    )
    await db_session.flush()
    message = EscalationMessage(
        escalation=EscalationOut.model_validate(escalation), directive=DirectiveOut.model_validate(directive)
    )
    return [LoggedEvent(command_channel(), message, f"directive:{directive_id}")]


async def list_escalations(
    *,
    db_session: AsyncSession,
    incident_id: int | None = None,
    directive_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Escalation]:
    """Escalations, newest first."""
    query = select(Escalation).order_by(Escalation.id.desc()).limit(limit).offset(offset)
    if incident_id is not None:
        query = query.where(Escalation.incident_id == incident_id)
    if directive_id is not None:
        query = query.where(Escalation.directive_id == directive_id)
    return list((await db_session.scalars(query)).all())
