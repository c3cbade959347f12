from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from dispatch_server.audit.views import actor_of
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession, Now, require_roles
from dispatch_server.directives import service
from dispatch_server.directives.schemas import DirectiveIn, DirectiveOut
from dispatch_server.ids import Id
from dispatch_server.people.models import Person
from dispatch_server.realtime import eventlog

router = APIRouter(prefix="/api/directives", tags=["directives"])


@router.post("", response_model=DirectiveOut, status_code=201, summary="Issue a directive")
async def issue(
    body: DirectiveIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Annotated[Person, Depends(require_roles(*service.ISSUE_ROLES))],
) -> DirectiveOut:
    directive, events = await service.issue(
        db_session=db_session,
        issuer=user,
        target_ids=body.target_ids,
        text=body.text,
        ack_deadline_seconds=body.ack_deadline_seconds,
        incident_id=body.incident_id,
        unit_id=body.unit_id,
        complete_by=body.complete_by,
        origin=body.origin,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return service.describe(directive, now)


@router.get("", response_model=list[DirectiveOut], summary="Directives I issued or received")
async def list_directives(
    db_session: DbSession, now: Now, user: CurrentUser, incident_id: Id | None = None
) -> list[DirectiveOut]:
    directives = await service.list_for(db_session=db_session, person=user, incident_id=incident_id)
    return [service.describe(d, now) for d in directives]


@router.post("/{directive_id}/ack", response_model=DirectiveOut, summary="Acknowledge a directive")
async def acknowledge(
    directive_id: Id, request: Request, context: Ctx, now: Now, db_session: DbSession, user: CurrentUser
) -> DirectiveOut:
    directive, events = await service.acknowledge(
        db_session=db_session,
        directive_id=directive_id,
        person_id=user.id,
        actor=actor_of(user, request),
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return service.describe(directive, now)


@router.post(
    "/{directive_id}/done",
    response_model=DirectiveOut,
    summary="Report a directive done (after acknowledging it)",
    responses={409: {"description": "Not acknowledged yet"}},
)
async def complete(
    directive_id: Id, request: Request, context: Ctx, now: Now, db_session: DbSession, user: CurrentUser
) -> DirectiveOut:
    directive, events = await service.complete(
        db_session=db_session,
        directive_id=directive_id,
        person_id=user.id,
        actor=actor_of(user, request),
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return service.describe(directive, now)
