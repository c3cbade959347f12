"""Field operations (外出执行, R8): register, list, start, end.

Who sees what: the command room (commanders, leaders, duty officers, admins) sees every field
operation; a field officer only those it is on; nobody else any. One someone may not see is, to
them, one that does not exist (404). Registering is for the command room and duty officers;
starting and ending also for the team's own members, who are the ones setting out.

Each change commits with its audit record and its events (for the command room and each team
member); the caller publishes the events. Ending an operation resolves its open alerts. Starting
and ending one that belongs to an incident is noted on the incident's timeline (R5).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts import service as alerts
from dispatch_server.alerts.models import Alert, AlertKind
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.errors import Conflict, Forbidden, Invalid, NotFound
from dispatch_server.field_ops.models import FieldOperation, FieldOperationMember, FieldOperationStatus
from dispatch_server.field_ops.schemas import FieldOperationOut
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import TimelineKind
from dispatch_server.people import service as people
from dispatch_server.people.models import COMMAND_ROLES, WATCH_ROLES, Person, Role
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import command_channel, person_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import FieldOperationMessage

__all__ = [
    "MANAGE_ROLES",
    "READ_ROLES",
    "SUPERVISION_KINDS",
    "active_for",
    "create",
    "end",
    "get_visible",
    "list_visible",
    "start",
    "subject",
]

READ_ROLES = frozenset({*WATCH_ROLES, Role.FIELD_OFFICER})
"""Who may see field operations at all (a field officer only its own)."""
MANAGE_ROLES = frozenset({*COMMAND_ROLES, Role.DUTY_OFFICER})
"""Who may register them, and start and end any of them."""


SUPERVISION_KINDS = (
    AlertKind.FIELD_OP_NO_STREAM,
    AlertKind.STREAM_LOST,
    AlertKind.STREAM_FROZEN,
    AlertKind.STREAM_BLACK,
    AlertKind.STREAM_COVERED,
)
"""The alerts the field operation rules raise; they last as long as the operation at most (an SOS
raised during one does not end with it)."""


def subject(field_operation_id: int) -> str:
    """How the event log and the alerts name a field operation."""
    return f"field_op:{field_operation_id}"


def _visible(query: Select[Any], person: Person) -> Select[Any]:
    if person.role in WATCH_ROLES:
        return query
    if person.role is Role.FIELD_OFFICER:
        mine = select(FieldOperationMember.field_operation_id).where(
            FieldOperationMember.person_id == person.id
        )
        return query.where(FieldOperation.id.in_(mine))
    return query.where(false())


def _status(query: Select[Any], status: FieldOperationStatus) -> Select[Any]:
    if status is FieldOperationStatus.PLANNED:
        return query.where(FieldOperation.started_at.is_(None))
    if status is FieldOperationStatus.ACTIVE:
        return query.where(FieldOperation.started_at.is_not(None), FieldOperation.ended_at.is_(None))
    return query.where(FieldOperation.ended_at.is_not(None))


async def get_visible(*, db_session: AsyncSession, person: Person, field_operation_id: int) -> FieldOperation:
    """The field operation, read afresh, if this person may see it; NotFound otherwise."""
    query = (
        _visible(select(FieldOperation), person)
        .where(FieldOperation.id == field_operation_id)
        .execution_options(populate_existing=True)
    )
    operation = await db_session.scalar(query)
    if operation is None:
        raise NotFound(f"there is no field operation {field_operation_id}")
    return operation


async def list_visible(
    *,
    db_session: AsyncSession,
    person: Person,
    status: FieldOperationStatus | None = None,
    incident_id: int | None = None,
    member_id: int | None = None,
    case_number: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[FieldOperation], int]:
    """One page of the field operations this person may see, newest first, and how many match."""
    query = _visible(select(FieldOperation), person)
    if status is not None:
        query = _status(query, status)
    if incident_id is not None:
        query = query.where(FieldOperation.incident_id == incident_id)
    if member_id is not None:
        on_it = select(FieldOperationMember.field_operation_id).where(
            FieldOperationMember.person_id == member_id
        )
        query = query.where(FieldOperation.id.in_(on_it))
    if case_number:
        query = query.where(FieldOperation.case_number == case_number)
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(FieldOperation.id.desc()).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).unique().all()), total


async def active_for(*, db_session: AsyncSession, person_id: int) -> FieldOperation | None:
    """The active field operation this officer is on (the latest started, if several)."""
    query = _status(select(FieldOperation), FieldOperationStatus.ACTIVE).where(
        FieldOperation.id.in_(
            select(FieldOperationMember.field_operation_id).where(FieldOperationMember.person_id == person_id)
        )
    )
    return await db_session.scalar(query.order_by(FieldOperation.started_at.desc()).limit(1))


async def _team(db_session: AsyncSession, person_ids: Iterable[int]) -> list[Person]:
    team = await people.get_many(db_session=db_session, person_ids=person_ids)
    wrong = [p.username for p in team if p.role is not Role.FIELD_OFFICER]
    if wrong:
        raise Invalid(f"a field operation's team is field officers, not {', '.join(wrong)}")
    return team


async def _events(db_session: AsyncSession, operation_id: int) -> list[LoggedEvent]:
    operation = await db_session.scalar(
        select(FieldOperation)
        .where(FieldOperation.id == operation_id)
        .execution_options(populate_existing=True)
    )
    assert operation is not None
    message = FieldOperationMessage(field_operation=FieldOperationOut.model_validate(operation))
    channels = [command_channel(), *(person_channel(m.person_id) for m in operation.members)]
    return await eventlog.record(
        db_session=db_session,
        events=[LoggedEvent(channel, message, subject(operation.id)) for channel in channels],
    )


async def create(
    *,
    db_session: AsyncSession,
    creator: Person,
    case_number: str,
    place: str,
    team_ids: list[int],
    planned_start: datetime,
    planned_end: datetime,
    streaming_required: bool,
    incident_id: int | None,
    now: datetime,
    actor: audit.Actor,
) -> tuple[FieldOperation, list[LoggedEvent]]:
    """Register a field operation (R8)."""
    if creator.role not in MANAGE_ROLES:
        raise Forbidden(f"a {creator.role.value} may not register field operations")
    case_number, place = case_number.strip(), place.strip()
    if not case_number or not place:
        raise Invalid("a field operation needs a case number and a place")
    if planned_end <= planned_start:
        raise Invalid("the planned end must come after the planned start")
    if planned_end <= now:
        raise Invalid("the planned end is in the past: register field operations before they end")
    team = await _team(db_session, team_ids)
    if incident_id is not None:
        await incidents.get_visible(db_session=db_session, person=creator, incident_id=incident_id)
    await eventlog.hold(db_session=db_session)
    operation = FieldOperation(
        case_number=case_number,
        place=place,
        incident_id=incident_id,
        planned_start=planned_start,
        planned_end=planned_end,
        streaming_required=streaming_required,
        created_by_id=creator.id,
        created_at=now,
    )
    operation.members = [FieldOperationMember(person_id=member.id) for member in team]
    db_session.add(operation)
    await db_session.flush()
    await audit.record(
        db_session=db_session,
        action=AuditAction.FIELD_OP_CREATE,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=subject(operation.id),
        detail={"case_number": case_number, "place": place, "team": [m.id for m in team]},
    )
    events = await _events(db_session, operation.id)
    await db_session.commit()
    return await get_visible(db_session=db_session, person=creator, field_operation_id=operation.id), events


def _on_timeline(
    db_session: AsyncSession, operation: FieldOperation, person: Person, kind: TimelineKind, now: datetime
) -> None:
    """Note the start or end on its incident's timeline (R5), in the caller's transaction."""
    if operation.incident_id is None:
        return
    what = "started" if kind is TimelineKind.FIELD_OP_STARTED else "ended"
    team = ", ".join(member.display_name for member in operation.team)
    summary = f"field operation {operation.id} ({operation.case_number}, {operation.place}; {team}) {what}"
    if kind is TimelineKind.FIELD_OP_ENDED and operation.end_note:
        summary += f": {operation.end_note}"
    incidents.add_entry(
        db_session,
        operation.incident_id,
        kind,
        summary,
        at=now,
        actor_id=person.id,
        subject=subject(operation.id),
    )


async def _may_run(db_session: AsyncSession, person: Person, field_operation_id: int) -> FieldOperation:
    operation = await get_visible(db_session=db_session, person=person, field_operation_id=field_operation_id)
    if person.role not in MANAGE_ROLES and person.id not in {m.person_id for m in operation.members}:
        raise Forbidden(f"a {person.role.value} may not start or end field operations")
    return operation


async def start(
    *, db_session: AsyncSession, person: Person, field_operation_id: int, now: datetime, actor: audit.Actor
) -> tuple[FieldOperation, list[LoggedEvent]]:
    """The team sets out: supervision begins (R8)."""
    await eventlog.hold(db_session=db_session)
    operation = await _may_run(db_session, person, field_operation_id)
    if operation.ended_at is not None:
        raise Conflict(f"field operation {field_operation_id} has ended")
    if operation.started_at is not None:
        raise Conflict(
            f"field operation {field_operation_id} started already, at {operation.started_at:%H:%M:%S}"
        )
    operation.started_at = now
    _on_timeline(db_session, operation, person, TimelineKind.FIELD_OP_STARTED, now)
    await audit.record(
        db_session=db_session,
        action=AuditAction.FIELD_OP_START,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=subject(operation.id),
    )
    events = await _events(db_session, operation.id)
    await db_session.commit()
    return await get_visible(db_session=db_session, person=person, field_operation_id=operation.id), events


async def end(
    *,
    db_session: AsyncSession,
    person: Person,
    field_operation_id: int,
    note: str,
    now: datetime,
    actor: audit.Actor,
) -> tuple[FieldOperation, list[LoggedEvent]]:
    """The team is back: supervision ends, and so do the operation's open alerts."""
    await eventlog.hold(db_session=db_session)
    operation = await _may_run(db_session, person, field_operation_id)
    if operation.started_at is None:
        raise Conflict(f"field operation {field_operation_id} has not started")
    if operation.ended_at is not None:
        raise Conflict(
            f"field operation {field_operation_id} ended already, at {operation.ended_at:%H:%M:%S}"
        )
    operation.ended_at = now
    operation.end_note = note.strip()
    _on_timeline(db_session, operation, person, TimelineKind.FIELD_OP_ENDED, now)
    await audit.record(
        db_session=db_session,
        action=AuditAction.FIELD_OP_END,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=subject(operation.id),
        detail={"note": operation.end_note} if operation.end_note else None,
    )
    events = await _events(db_session, operation.id)
    open_alerts = await db_session.execute(
        select(Alert.kind, Alert.subject).where(
            Alert.field_operation_id == operation.id,
            Alert.kind.in_(SUPERVISION_KINDS),
            Alert.resolved_at.is_(None),
        )
    )
    for kind, alert_subject in open_alerts.all():
        events += await alerts.resolve_open(
            db_session=db_session, kind=kind, subject=alert_subject, now=now, note="the field operation ended"
        )
    await db_session.commit()
    return await get_visible(db_session=db_session, person=person, field_operation_id=operation.id), events
