"""The escalation package (R6): what an escalation carries, built from what SQL holds at that moment.

For an incident reported up: its summary, its officers' live streams (links, not grants), its open
directives with each target's state, its recent alerts and its last timeline entries. For a missed
acknowledgement, the smaller one: the directive, the target and the incident's summary. The package
is stored with the escalation as canonical JSON and its SHA-256 (:func:`stored`), evidence of what
the recipients were sent; each part is bounded, so a package stays small whatever the incident.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts.models import Alert
from dispatch_server.alerts.schemas import AlertOut
from dispatch_server.audit.service import canonical_json
from dispatch_server.directives.models import Directive, DirectiveTarget, TargetState
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.escalation.schemas import EscalationPackage, IncidentSummary, LiveLink
from dispatch_server.field_ops.models import FieldOperation
from dispatch_server.incidents.models import DirectiveIncident, Incident, TimelineEntry
from dispatch_server.incidents.schemas import TimelineEntryOut
from dispatch_server.people.models import Person
from dispatch_server.people.schemas import UserOut
from dispatch_server.streams.models import Stream

__all__ = ["LIMITS", "Limits", "Links", "for_incident", "for_missed_ack", "stored", "summary"]


@dataclass(frozen=True, slots=True)
class Links:
    """Where links in a package point."""

    public_url: str
    """This server as people reach it (the wall is under it)."""
    relay_url: str
    """The relay as clients are told it (WHEP is under it)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of each part a package holds at most."""

    live: int = 64
    directives: int = 20
    alerts: int = 10
    timeline: int = 20


LIMITS = Limits()


def summary(incident: Incident, now: datetime) -> IncidentSummary:
    until = incident.closed_at or now
    return IncidentSummary(
        id=incident.id,
        kind=incident.kind,
        case_number=incident.case_number,
        title=incident.title,
        place=incident.place,
        status=incident.status,
        commander=UserOut.model_validate(incident.commander) if incident.commander else None,
        opened_at=incident.opened_at,
        open_seconds=max(0, int((until - incident.opened_at).total_seconds())),
        officers=[UserOut.model_validate(officer) for officer in incident.officers],
    )


async def _live(db_session: AsyncSession, incident: Incident, links: Links, limit: int) -> list[LiveLink]:
    officer_ids = [officer.id for officer in incident.officers]
    if not officer_ids:
        return []
    query = (
        select(Stream)
        .where(Stream.officer_id.in_(officer_ids), Stream.started_at.is_not(None), Stream.ended_at.is_(None))
        .order_by(Stream.started_at, Stream.id)
        .limit(limit)
    )
    return [
        LiveLink(
            stream_id=stream.id,
            officer=UserOut.model_validate(stream.officer),
            device=stream.device,
            started_at=stream.started_at,
            health=stream.health,
            whep_url=f"{links.relay_url}/whep/{stream.id}",
            wall_url=f"{links.public_url}/wall?incident={incident.id}&stream={stream.id}",
        )
        for stream in (await db_session.scalars(query)).unique().all()
    ]


async def _open_directives(
    db_session: AsyncSession, incident_id: int, now: datetime, limit: int
) -> list[DirectiveOut]:
    not_done = select(DirectiveTarget.directive_id).where(DirectiveTarget.state != TargetState.DONE)
    query = (
        select(Directive)
        .join(DirectiveIncident, DirectiveIncident.directive_id == Directive.id)
        .where(DirectiveIncident.incident_id == incident_id, Directive.id.in_(not_done))
        .order_by(Directive.id.desc())
        .limit(limit)
    )
    directives = (await db_session.scalars(query)).unique().all()
    return [DirectiveOut.model_validate(d, context={"now": now}) for d in directives]


async def _recent_alerts(db_session: AsyncSession, incident: Incident, limit: int) -> list[AlertOut]:
    operations = select(FieldOperation.id).where(FieldOperation.incident_id == incident.id)
    about = [Alert.incident_id == incident.id, Alert.field_operation_id.in_(operations)]
    officer_ids = [officer.id for officer in incident.officers]
    if officer_ids:
        about.append(Alert.person_id.in_(officer_ids))
    query = select(Alert).where(or_(*about)).order_by(Alert.id.desc()).limit(limit)
    return [AlertOut.model_validate(alert) for alert in (await db_session.scalars(query)).unique().all()]


async def _last_entries(db_session: AsyncSession, incident_id: int, limit: int) -> list[TimelineEntryOut]:
    query = (
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id)
        .order_by(TimelineEntry.id.desc())
        .limit(limit)
    )
    entries = list((await db_session.scalars(query)).unique().all())
    return [TimelineEntryOut.model_validate(entry) for entry in reversed(entries)]


async def for_incident(
    *, db_session: AsyncSession, incident: Incident, now: datetime, links: Links, limits: Limits = LIMITS
) -> EscalationPackage:
    """The full package for an incident reported up (call after flushing what the escalation
    itself writes, so that its timeline entries are in it)."""
    return EscalationPackage(
        built_at=now,
        incident=summary(incident, now),
        live=await _live(db_session, incident, links, limits.live),
        view_grant_url=f"{links.public_url}/api/incidents/{incident.id}/grants/view",
        directives=await _open_directives(db_session, incident.id, now, limits.directives),
        alerts=await _recent_alerts(db_session, incident, limits.alerts),
        timeline=await _last_entries(db_session, incident.id, limits.timeline),
    )


def for_missed_ack(
    *, directive: Directive, target: Person, incident: Incident | None, now: datetime
) -> EscalationPackage:
    """The smaller package of a missed acknowledgement: the directive, the target, the incident."""
    return EscalationPackage(
        built_at=now,
        incident=summary(incident, now) if incident is not None else None,
        directives=[DirectiveOut.model_validate(directive, context={"now": now})],
        target=UserOut.model_validate(target),
    )


def stored(package: EscalationPackage) -> tuple[str, str]:
    """The package as it is stored (canonical JSON) and that text's SHA-256."""
    text = canonical_json(package.model_dump(mode="json"))
    return text, hashlib.sha256(text.encode()).hexdigest()
