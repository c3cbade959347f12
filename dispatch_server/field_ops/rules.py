"""Supervising field operations (R8), as checks for the alert :class:`RuleRunner`.

Each check reads the running operations, their teams and the teams' streams from SQL, raises the
alerts that should be open and resolves those of its kinds that should not be any more (the stream
came back, the picture is fine again, the operation ended). It keeps nothing between runs.

- :class:`NoStreamCheck`: during an operation that requires streaming, a team member with no live
  stream for more than ``no_stream_seconds`` (counted from the start, or from when their last stream
  ended): ``field_op_no_stream``, one per member, until a stream of theirs is live.
- :func:`stream_check`: during an operation, a team member whose stream ended and who has none
  live: ``stream_lost``; a live stream of a member that the relay flags frozen, black or covered:
  ``stream_frozen``, ``stream_black``, ``stream_covered``, one per stream and flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts import service as alerts
from dispatch_server.alerts.models import Alert, AlertKind, AlertLevel
from dispatch_server.field_ops.models import FieldOperation
from dispatch_server.field_ops.service import subject
from dispatch_server.people.models import Person
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.streams.models import Stream

__all__ = ["HEALTH_KINDS", "NoStreamCheck", "stream_check"]

HEALTH_KINDS = {
    "frozen": AlertKind.STREAM_FROZEN,
    "black": AlertKind.STREAM_BLACK,
    "covered": AlertKind.STREAM_COVERED,
}
"""The relay's video health flags that raise an alert during a field operation, and which."""


@dataclass(frozen=True, slots=True)
class _Wanted:
    """An alert a check says should be open now."""

    kind: AlertKind
    subject: str
    message: str
    level: AlertLevel
    operation: FieldOperation
    person: Person
    stream_id: str | None = None


async def _running(db_session: AsyncSession, *, streaming_required: bool) -> list[FieldOperation]:
    query = select(FieldOperation).where(
        FieldOperation.started_at.is_not(None), FieldOperation.ended_at.is_(None)
    )
    if streaming_required:
        query = query.where(FieldOperation.streaming_required)
    return list((await db_session.scalars(query.order_by(FieldOperation.id))).unique().all())


async def _live_streams(db_session: AsyncSession, person_ids: set[int]) -> dict[int, list[Stream]]:
    query = select(Stream).where(
        Stream.officer_id.in_(person_ids), Stream.started_at.is_not(None), Stream.ended_at.is_(None)
    )
    live: dict[int, list[Stream]] = {}
    for stream in (await db_session.scalars(query.order_by(Stream.started_at))).unique().all():
        live.setdefault(stream.officer_id, []).append(stream)
    return live


async def _last_ended(db_session: AsyncSession, person_id: int, since: datetime) -> Stream | None:
    """The officer's stream that ended last, if one ended at or after ``since``."""
    query = (
        select(Stream)
        .where(Stream.officer_id == person_id, Stream.started_at.is_not(None), Stream.ended_at >= since)
        .order_by(Stream.ended_at.desc())
        .limit(1)
    )
    return await db_session.scalar(query)


async def _settle(
    db_session: AsyncSession,
    now: datetime,
    kinds: tuple[AlertKind, ...],
    wanted: list[_Wanted],
    running: set[int],
) -> list[LoggedEvent]:
    """Raise what is wanted; resolve the open alerts of these kinds that are not."""
    events: list[LoggedEvent] = []
    for want in wanted:
        events += await alerts.raise_alert(
            db_session=db_session,
            kind=want.kind,
            subject=want.subject,
            message=want.message,
            level=want.level,
            now=now,
            incident_id=want.operation.incident_id,
            field_operation_id=want.operation.id,
            stream_id=want.stream_id,
            person_id=want.person.id,
        )
    keep = {(want.kind, want.subject) for want in wanted}
    open_alerts = await db_session.execute(
        select(Alert.kind, Alert.subject, Alert.field_operation_id).where(
            Alert.kind.in_(kinds), Alert.resolved_at.is_(None), Alert.field_operation_id.is_not(None)
        )
    )
    for kind, open_subject, operation_id in open_alerts.all():
        if (kind, open_subject) in keep:
            continue
        if operation_id not in running:
            note = "the field operation is not running"
        elif kind in (AlertKind.FIELD_OP_NO_STREAM, AlertKind.STREAM_LOST):
            note = "streaming again"
        else:
            note = "the picture is fine again, or the stream ended"
        events += await alerts.resolve_open(
            db_session=db_session, kind=kind, subject=open_subject, now=now, note=note
        )
    return events


class NoStreamCheck:
    """``field_op_no_stream`` (R8): see the module's docstring."""

    name = "field_op_no_stream"

    def __init__(self, no_stream_seconds: float) -> None:
        self.grace = timedelta(seconds=no_stream_seconds)

    async def __call__(self, db_session: AsyncSession, now: datetime) -> list[LoggedEvent]:
        operations = await _running(db_session, streaming_required=True)
        live = await _live_streams(db_session, {m.person_id for op in operations for m in op.members})
        wanted: list[_Wanted] = []
        for operation in operations:
            assert operation.started_at is not None
            for member in operation.members:
                if live.get(member.person_id):
                    continue
                last = await _last_ended(db_session, member.person_id, operation.started_at)
                since = (
                    max(operation.started_at, last.ended_at)
                    if last and last.ended_at
                    else operation.started_at
                )
                if now - since <= self.grace:
                    continue
                seconds = int((now - since).total_seconds())
                wanted.append(
                    _Wanted(
                        kind=AlertKind.FIELD_OP_NO_STREAM,
                        subject=f"{subject(operation.id)}:person:{member.person_id}",
                        message=f"{member.person.display_name} has had no live stream for {seconds} s during "
                        f"field operation {operation.id} ({operation.case_number}, {operation.place})",
                        level=AlertLevel.WARNING,
                        operation=operation,
                        person=member.person,
                        stream_id=last.id if last else None,
                    )
                )
        running = {operation.id for operation in operations}
        return await _settle(db_session, now, (AlertKind.FIELD_OP_NO_STREAM,), wanted, running)


async def stream_check(db_session: AsyncSession, now: datetime) -> list[LoggedEvent]:
    """``stream_lost`` and ``stream_frozen``/``_black``/``_covered`` (R8): see the module's docstring."""
    operations = await _running(db_session, streaming_required=False)
    live = await _live_streams(db_session, {m.person_id for op in operations for m in op.members})
    wanted: list[_Wanted] = []
    for operation in operations:
        assert operation.started_at is not None
        where = f"field operation {operation.id} ({operation.case_number}, {operation.place})"
        for member in operation.members:
            name = member.person.display_name
            streams = live.get(member.person_id, [])
            for stream in streams:
                for flag in stream.health:
                    kind = HEALTH_KINDS.get(flag)
                    if kind is not None:
                        wanted.append(
                            _Wanted(
                                kind=kind,
                                subject=f"{subject(operation.id)}:stream:{stream.id}",
                                message=f"{name}'s camera is {flag} during {where}",
                                level=AlertLevel.WARNING,
                                operation=operation,
                                person=member.person,
                                stream_id=stream.id,
                            )
                        )
            if streams:
                continue
            lost = await _last_ended(db_session, member.person_id, operation.started_at)
            if lost is not None:
                wanted.append(
                    _Wanted(
                        kind=AlertKind.STREAM_LOST,
                        subject=f"{subject(operation.id)}:person:{member.person_id}",
                        message=f"{name}'s stream ended ({lost.end_reason or 'no reason'}) during {where}",
                        level=AlertLevel.CRITICAL,
                        operation=operation,
                        person=member.person,
                        stream_id=lost.id,
                    )
                )
    running = {operation.id for operation in operations}
    return await _settle(db_session, now, (AlertKind.STREAM_LOST, *HEALTH_KINDS.values()), wanted, running)
