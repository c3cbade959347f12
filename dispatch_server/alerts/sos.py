"""SOS (R9): an officer calls for help, by REST or over the websocket, with the position if the
device knows it. A critical alert for the command room at once, and for the officer, who so
sees it arrive and be acknowledged. One open SOS per officer: pressing again while it is open
returns that one. It names the field operation the officer is on, if any, and its incident (else
the officer's latest open incident)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts import service as alerts
from dispatch_server.alerts.models import Alert, AlertKind, AlertLevel
from dispatch_server.alerts.schemas import Position
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.errors import Forbidden
from dispatch_server.field_ops import service as field_ops
from dispatch_server.incidents import service as incidents
from dispatch_server.people.models import Person, Role
from dispatch_server.realtime.eventlog import LoggedEvent

__all__ = ["raise_sos", "subject"]


def subject(person_id: int) -> str:
    return f"sos:person:{person_id}"


def _message(officer: Person, position: Position | None, note: str) -> str:
    text = f"SOS from {officer.display_name}"
    if position is not None:
        text += f" at {position.latitude:.5f}, {position.longitude:.5f}"
        if position.accuracy_m is not None:
            text += f" (±{position.accuracy_m:.0f} m)"
    return f"{text}: {note}" if note else text


async def raise_sos(
    *,
    db_session: AsyncSession,
    officer: Person,
    position: Position | None,
    note: str,
    now: datetime,
    actor: audit.Actor,
) -> tuple[Alert, list[LoggedEvent]]:
    """The officer's open SOS, new (with its events, committed) or the one already open (no events)."""
    if officer.role is not Role.FIELD_OFFICER:
        raise Forbidden("only field officers call SOS")
    note = note.strip()
    operation = await field_ops.active_for(db_session=db_session, person_id=officer.id)
    if operation is not None and operation.incident_id is not None:
        incident_id: int | None = operation.incident_id
    else:
        open_incidents = await incidents.open_incidents_of(db_session=db_session, person_id=officer.id)
        incident_id = max(open_incidents) if open_incidents else None
    alert: Alert | None = None
    while alert is None:  # again only if the open one was resolved in the instant between
        events = await alerts.raise_alert(
            db_session=db_session,
            kind=AlertKind.SOS,
            subject=subject(officer.id),
            message=_message(officer, position, note),
            level=AlertLevel.CRITICAL,
            now=now,
            incident_id=incident_id,
            field_operation_id=operation.id if operation is not None else None,
            person_id=officer.id,
            latitude=position.latitude if position else None,
            longitude=position.longitude if position else None,
            accuracy_m=position.accuracy_m if position else None,
        )
        alert = await alerts.find_open(db_session=db_session, kind=AlertKind.SOS, subject=subject(officer.id))
    if events:
        await audit.record(
            db_session=db_session,
            action=AuditAction.ALERT_SOS,
            outcome=Outcome.SUCCESS,
            actor=actor,
            object=alerts.subject_of(alert.id),
            detail={"position": position.model_dump() if position else None, "note": note},
        )
    await db_session.commit()
    return alert, events
