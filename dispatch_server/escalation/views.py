"""REST for escalations (R4, R6): the missed acknowledgements that escalated on their own, and
incidents reported up by a person, with their packages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from dispatch_server.audit.views import actor_of
from dispatch_server.auth.deps import Ctx, DbSession, Now, require_roles
from dispatch_server.escalation import manual, service
from dispatch_server.escalation.package import Links
from dispatch_server.escalation.schemas import (
    EscalateIn,
    EscalationOut,
    IncidentEscalationOut,
    IncidentEscalationPage,
)
from dispatch_server.ids import Id
from dispatch_server.paging import Paging
from dispatch_server.people.models import WATCH_ROLES, Person
from dispatch_server.realtime import eventlog

router = APIRouter(prefix="/api/escalations", tags=["escalations"])
incident_router = APIRouter(prefix="/api/incidents", tags=["escalations"])

Escalator = Annotated[Person, Depends(require_roles(*manual.ESCALATE_ROLES))]
Reader = Annotated[Person, Depends(require_roles(*manual.READ_ROLES))]


@router.get("", response_model=list[EscalationOut], summary="Escalations, newest first, a page at a time")
async def list_escalations(
    db_session: DbSession,
    _user: Annotated[Person, Depends(require_roles(*WATCH_ROLES))],
    page: Paging,
    incident_id: Id | None = None,
    directive_id: Id | None = None,
) -> list[EscalationOut]:
    rows = await service.list_escalations(
        db_session=db_session,
        incident_id=incident_id,
        directive_id=directive_id,
        limit=page.limit,
        offset=page.offset,
    )
    return [EscalationOut.model_validate(row) for row in rows]


@router.get(
    "/received",
    response_model=IncidentEscalationPage,
    summary="Incident escalations sent to me, newest first, a page at a time",
)
async def list_received(
    db_session: DbSession,
    user: Reader,
    page: Paging,
    pending: Annotated[bool, Query(description="Only those I have not acknowledged yet.")] = False,
) -> IncidentEscalationPage:
    items, total = await manual.list_received(
        db_session=db_session, person=user, pending=pending, limit=page.limit, offset=page.offset
    )
    return IncidentEscalationPage.of([IncidentEscalationOut.model_validate(e) for e in items], total, page)


@incident_router.post(
    "/{incident_id}/escalations",
    response_model=IncidentEscalationOut,
    status_code=201,
    summary="Escalate an incident to the leader on duty or the upper court, with its package",
)
async def escalate(
    incident_id: Id,
    body: EscalateIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Escalator,
) -> IncidentEscalationOut:
    settings = context.settings
    escalation, events = await manual.escalate(
        db_session=db_session,
        person=user,
        incident_id=incident_id,
        target=body.target,
        reason=body.reason,
        observer_id=body.observer_id,
        now=now,
        links=Links(public_url=settings.public_url, relay_url=settings.relay_url),
        leader_post=settings.duty.leader_post,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return IncidentEscalationOut.model_validate(escalation)


@incident_router.get(
    "/{incident_id}/escalations",
    response_model=IncidentEscalationPage,
    summary="An incident's escalations with their packages, newest first, a page at a time",
)
async def list_for_incident(
    incident_id: Id,
    db_session: DbSession,
    user: Reader,
    page: Paging,
) -> IncidentEscalationPage:
    items, total = await manual.list_for_incident(
        db_session=db_session, person=user, incident_id=incident_id, limit=page.limit, offset=page.offset
    )
    return IncidentEscalationPage.of([IncidentEscalationOut.model_validate(e) for e in items], total, page)


@incident_router.post(
    "/{incident_id}/escalations/{escalation_id}/ack",
    response_model=IncidentEscalationOut,
    summary="Acknowledge receiving an escalation (its recipients; again: no change)",
)
async def acknowledge(
    incident_id: Id,
    escalation_id: Id,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Reader,
) -> IncidentEscalationOut:
    escalation, events = await manual.acknowledge(
        db_session=db_session,
        person=user,
        incident_id=incident_id,
        escalation_id=escalation_id,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return IncidentEscalationOut.model_validate(escalation)
