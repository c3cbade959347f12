"""Acknowledgement overdue (R4): when the escalation service escalates a directive's target, an
``ack_overdue`` alert opens for the command room; it resolves itself once the target acknowledges
(the :func:`check` rule) or when someone resolves it."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts import service as alerts
from dispatch_server.alerts.models import Alert, AlertKind, AlertLevel
from dispatch_server.directives.models import DirectiveTarget
from dispatch_server.realtime.eventlog import LoggedEvent

__all__ = ["check", "raise_ack_overdue", "subject"]

_SUBJECT = re.compile(r"^directive:(\d+):person:(\d+)$")


def subject(directive_id: int, person_id: int) -> str:
    return f"directive:{directive_id}:person:{person_id}"


async def raise_ack_overdue(
    *,
    db_session: AsyncSession,
    directive_id: int,
    person_id: int,
    message: str,
    incident_id: int | None,
    now: datetime,
) -> list[LoggedEvent]:
    """In the escalation's transaction; once per target while it stays open (a second escalation
    of the same target adds nothing)."""
    return await alerts.raise_alert(
        db_session=db_session,
        kind=AlertKind.ACK_OVERDUE,
        subject=subject(directive_id, person_id),
        message=message,
        level=AlertLevel.WARNING,
        now=now,
        incident_id=incident_id,
        person_id=person_id,
    )


async def check(db_session: AsyncSession, now: datetime) -> list[LoggedEvent]:
    """Resolve the overdue alerts whose targets have acknowledged since."""
    query = select(Alert.subject).where(Alert.kind == AlertKind.ACK_OVERDUE, Alert.resolved_at.is_(None))
    events: list[LoggedEvent] = []
    for open_subject in (await db_session.scalars(query)).all():
        match = _SUBJECT.match(open_subject)
        if match is None:
            continue
        directive_id, person_id = int(match[1]), int(match[2])
        acknowledged_at = await db_session.scalar(
            select(DirectiveTarget.acknowledged_at).where(
                DirectiveTarget.directive_id == directive_id,
                DirectiveTarget.person_id == person_id,
                DirectiveTarget.acknowledged_at.is_not(None),  # acknowledged, and maybe done since
            )
        )
        if acknowledged_at is not None:
            events += await alerts.resolve_open(
                db_session=db_session,
                kind=AlertKind.ACK_OVERDUE,
                subject=open_subject,
                now=now,
                note=f"acknowledged late, at {acknowledged_at.isoformat(timespec='seconds')}",
            )
    return events
