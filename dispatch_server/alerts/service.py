"""Alerts (R8, R9, R4, R10, R2): raise, acknowledge, resolve, list.

:func:`raise_alert` and :func:`resolve_open` are for the rules and the other domains: they work in
the caller's transaction and return the events, already written to the event log; the caller
commits, then publishes them (:func:`dispatch_server.realtime.eventlog.publish`). Both take the
event log's lock first, so that their events report the alert's state in id order and two
callers never wait on each other in opposite orders.

Exactly one open alert per ``(kind, subject)``: the insert is ``ON CONFLICT DO NOTHING`` on the
partial unique index over open alerts, so raising what is already open (here, in another task, in
another dispatch process) changes nothing and returns no events. Acknowledging and resolving are
conditional UPDATEs: doing either twice is harmless and reports the state as it stands.

Alerts go to the command room's channel; an SOS also to the officer who sent it, who so learns
that it was seen and when it is resolved. Raising and resolving one also writes an entry, in the
same transaction, on the timeline of each incident it concerns (R5): the incident it names and its
field operation's, else the open incidents its officer is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts.models import Alert, AlertKind, AlertLevel
from dispatch_server.alerts.schemas import AlertOut
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.errors import Conflict, NotFound
from dispatch_server.field_ops.models import FieldOperation
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import TimelineKind
from dispatch_server.people.models import Person
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import command_channel, person_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import AlertMessage, AlertUpdateMessage

__all__ = [
    "acknowledge",
    "find_open",
    "get",
    "list_alerts",
    "open_subjects",
    "raise_alert",
    "resolve",
    "resolve_open",
    "subject_of",
]


def subject_of(alert_id: int) -> str:
    """How the event log names an alert."""
    return f"alert:{alert_id}"


def _channels(alert: Alert) -> list[str]:
    channels = [command_channel()]
    if alert.kind is AlertKind.SOS and alert.person_id is not None:
        channels.append(person_channel(alert.person_id))
    return channels


async def _incidents_of(db_session: AsyncSession, alert: Alert) -> list[int]:
    """The incidents an alert concerns: the one it names and its field operation's; when it names
    neither, the open ones its officer is on (an alert about one directive stays off the officer's
    other incidents)."""
    found = {alert.incident_id} if alert.incident_id is not None else set()
    if alert.field_operation_id is not None:
        operation_incident = await db_session.scalar(
            select(FieldOperation.incident_id).where(FieldOperation.id == alert.field_operation_id)
        )
        if operation_incident is not None:
            found.add(operation_incident)
    if not found and alert.person_id is not None:
        found.update(await incidents.open_incidents_of(db_session=db_session, person_id=alert.person_id))
    return sorted(found)


async def _on_timelines(db_session: AsyncSession, alert: Alert, kind: TimelineKind, at: datetime) -> None:
    """Note an alert raised or resolved on the timelines of the incidents it concerns (R5)."""
    if kind is TimelineKind.ALERT_RAISED:
        summary = f"{alert.level.value} alert: {alert.message}"
    else:
        by = f" by {alert.resolved_by.display_name}" if alert.resolved_by is not None else ""
        note = f" ({alert.resolved_note})" if alert.resolved_note else ""
        summary = f"alert resolved{by}: {alert.message}{note}"
    for incident_id in await _incidents_of(db_session, alert):
        incidents.add_entry(
            db_session,
            incident_id,
            kind,
            summary,
            at=at,
            actor_id=alert.resolved_by_id if kind is TimelineKind.ALERT_RESOLVED else None,
            person_id=alert.person_id,
            stream_id=alert.stream_id,
            subject=subject_of(alert.id),
        )


async def _record(
    db_session: AsyncSession,
    alert_id: int,
    message_type: type[AlertMessage | AlertUpdateMessage],
    timeline: TimelineKind | None = None,
) -> list[LoggedEvent]:
    """Log the alert as it stands for its channels (and, for ``timeline``, note it on its incidents')."""
    alert = await get(db_session=db_session, alert_id=alert_id)
    if timeline is not None:
        at = alert.raised_at if timeline is TimelineKind.ALERT_RAISED else alert.resolved_at
        await _on_timelines(db_session, alert, timeline, at or alert.raised_at)
    message = message_type(alert=AlertOut.model_validate(alert))
    events = [LoggedEvent(channel, message, subject_of(alert.id)) for channel in _channels(alert)]
    return await eventlog.record(db_session=db_session, events=events)


async def raise_alert(
    *,
    db_session: AsyncSession,
    kind: AlertKind,
    subject: str,
    message: str,
    level: AlertLevel,
    now: datetime,
    incident_id: int | None = None,
    field_operation_id: int | None = None,
    stream_id: str | None = None,
    person_id: int | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    accuracy_m: float | None = None,
) -> list[LoggedEvent]:
    """Open an alert of this kind about this subject, unless one is open already (then: []).

    In the caller's transaction; the events returned are logged: commit, then publish them."""
    await eventlog.hold(db_session=db_session)
    values: dict[str, Any] = {
        "kind": kind,
        "level": level,
        "message": message,
        "subject": subject[:128],
        "incident_id": incident_id,
        "field_operation_id": field_operation_id,
        "stream_id": stream_id,
        "person_id": person_id,
        "latitude": latitude,
        "longitude": longitude,
        "accuracy_m": accuracy_m,
        "raised_at": now,
        "acknowledged_note": "",
        "resolved_note": "",
    }
    dialect = db_session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Alert)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["kind", "subject"], index_where=Alert.resolved_at.is_(None))
        .returning(Alert.id)
    )
    alert_id = (await db_session.execute(statement)).scalar_one_or_none()
    if alert_id is None:
        return []  # open already
    return await _record(db_session, alert_id, AlertMessage, TimelineKind.ALERT_RAISED)


async def resolve_open(
    *, db_session: AsyncSession, kind: AlertKind, subject: str, now: datetime, note: str
) -> list[LoggedEvent]:
    """The open alert of this kind about this subject cleared itself (the stream came back, the
    seat was filled): resolve it with ``note``. [] when none is open. In the caller's
    transaction, like :func:`raise_alert`."""
    await eventlog.hold(db_session=db_session)
    alert_id = await db_session.scalar(
        update(Alert)
        .where(Alert.kind == kind, Alert.subject == subject, Alert.resolved_at.is_(None))
        .values(resolved_at=now, resolved_note=note)
        .returning(Alert.id)
        .execution_options(synchronize_session=False)
    )
    if alert_id is None:
        return []
    return await _record(db_session, alert_id, AlertUpdateMessage, TimelineKind.ALERT_RESOLVED)


async def open_subjects(
    *, db_session: AsyncSession, kinds: Sequence[AlertKind], prefix: str = ""
) -> set[tuple[AlertKind, str]]:
    """The open alerts of these kinds whose subjects start with ``prefix``: what a rule raised
    and has not cleared yet."""
    query = select(Alert.kind, Alert.subject).where(Alert.kind.in_(kinds), Alert.resolved_at.is_(None))
    if prefix:
        query = query.where(func.substr(Alert.subject, 1, len(prefix)) == prefix)
    return {(kind, subject) for kind, subject in (await db_session.execute(query)).all()}


async def find_open(*, db_session: AsyncSession, kind: AlertKind, subject: str) -> Alert | None:
    query = select(Alert).where(Alert.kind == kind, Alert.subject == subject, Alert.resolved_at.is_(None))
    return await db_session.scalar(query.execution_options(populate_existing=True))


async def get(*, db_session: AsyncSession, alert_id: int) -> Alert:
    """The alert, read afresh."""
    query = select(Alert).where(Alert.id == alert_id).execution_options(populate_existing=True)
    alert = await db_session.scalar(query)
    if alert is None:
        raise NotFound(f"there is no alert {alert_id}")
    return alert


async def list_alerts(
    *,
    db_session: AsyncSession,
    open_only: bool = True,
    kind: AlertKind | None = None,
    incident_id: int | None = None,
    field_operation_id: int | None = None,
    person_id: int | None = None,
    since: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """One page of alerts, newest first, and how many match in all."""
    query = select(Alert)
    if open_only:
        query = query.where(Alert.resolved_at.is_(None))
    if kind is not None:
        query = query.where(Alert.kind == kind)
    if incident_id is not None:
        query = query.where(Alert.incident_id == incident_id)
    if field_operation_id is not None:
        query = query.where(Alert.field_operation_id == field_operation_id)
    if person_id is not None:
        query = query.where(Alert.person_id == person_id)
    if since is not None:
        query = query.where(Alert.raised_at >= since)
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(Alert.id.desc()).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).all()), total


async def acknowledge(
    *, db_session: AsyncSession, alert_id: int, person: Person, note: str, now: datetime, actor: audit.Actor
) -> tuple[Alert, list[LoggedEvent]]:
    """Someone in the command room has seen it and is on it. Once: acknowledging an acknowledged
    alert returns it as it stands. A resolved alert that nobody acknowledged is past that: 409."""
    await eventlog.hold(db_session=db_session)
    changed: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
        update(Alert)
        .where(Alert.id == alert_id, Alert.acknowledged_at.is_(None), Alert.resolved_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by_id=person.id, acknowledged_note=note.strip())
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        await db_session.rollback()
        alert = await get(db_session=db_session, alert_id=alert_id)
        if alert.acknowledged_at is None:
            raise Conflict(f"alert {alert_id} is resolved already: there is nothing to acknowledge")
        return alert, []
    return await _handled(db_session, alert_id, AuditAction.ALERT_ACKNOWLEDGE, actor, note)


async def resolve(
    *, db_session: AsyncSession, alert_id: int, person: Person, note: str, now: datetime, actor: audit.Actor
) -> tuple[Alert, list[LoggedEvent]]:
    """It is dealt with. Once: resolving a resolved alert returns it as it stands."""
    await eventlog.hold(db_session=db_session)
    changed: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
        update(Alert)
        .where(Alert.id == alert_id, Alert.resolved_at.is_(None))
        .values(resolved_at=now, resolved_by_id=person.id, resolved_note=note.strip())
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        await db_session.rollback()
        return await get(db_session=db_session, alert_id=alert_id), []
    return await _handled(
        db_session, alert_id, AuditAction.ALERT_RESOLVE, actor, note, TimelineKind.ALERT_RESOLVED
    )


async def _handled(
    db_session: AsyncSession,
    alert_id: int,
    action: AuditAction,
    actor: audit.Actor,
    note: str,
    timeline: TimelineKind | None = None,
) -> tuple[Alert, list[LoggedEvent]]:
    """After someone acknowledged or resolved the alert: audit it, log the change (and on the
    incidents' timelines, ``timeline``), commit, and return the alert as it now stands."""
    await audit.record(
        db_session=db_session,
        action=action,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=subject_of(alert_id),
        detail={"note": note.strip()} if note.strip() else None,
    )
    events = await _record(db_session, alert_id, AlertUpdateMessage, timeline)
    await db_session.commit()
    return await get(db_session=db_session, alert_id=alert_id), events
