from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from dispatch_server.audit.models import AuditAction
from dispatch_server.audit.views import actor_of, record_success
from dispatch_server.auth.deps import Ctx, DbSession, require_roles
from dispatch_server.ids import Id
from dispatch_server.incidents import service as incidents
from dispatch_server.people.models import WATCH_ROLES, Person, Role
from dispatch_server.streams import service
from dispatch_server.streams.schemas import (
    IncidentViewGrantIn,
    PublishGrantIn,
    PublishGrantOut,
    StreamOut,
    ViewableStream,
    ViewGrantIn,
    ViewGrantOut,
)

router = APIRouter(prefix="/api", tags=["streams"])

Watcher = Annotated[Person, Depends(require_roles(*WATCH_ROLES))]
INCIDENT_WATCH_ROLES = frozenset({*WATCH_ROLES, Role.UPPER_OBSERVER})
"""Who may watch an incident's streams: the command room, and an upper-court observer it is shared
with (R6)."""
IncidentWatcher = Annotated[Person, Depends(require_roles(*INCIDENT_WATCH_ROLES))]


@router.get("/streams", response_model=list[StreamOut], summary="Live streams")
async def live_streams(context: Ctx, db_session: DbSession, _user: Watcher) -> list[StreamOut]:
    relay_url = context.settings.relay_url
    return [service.stream_out(s, relay_url) for s in await service.list_live(db_session=db_session)]


@router.post("/grants/publish", response_model=PublishGrantOut, summary="A grant to publish one stream")
async def publish_grant(
    body: PublishGrantIn,
    request: Request,
    context: Ctx,
    db_session: DbSession,
    user: Annotated[Person, Depends(require_roles(Role.FIELD_OFFICER))],
) -> PublishGrantOut:
    token, stream, expires_at = await service.grant_publish(
        db_session=db_session,
        signer=context.grants,
        officer=user,
        device=body.device,
        minutes=context.settings.auth.publish_grant_minutes,
        actor=actor_of(user, request),
    )
    return PublishGrantOut(
        grant=token,
        stream_id=stream.id,
        whip_url=f"{context.settings.relay_url}/whip",
        expires_at=expires_at,
        ice_servers=[
            server.model_dump(mode="json", exclude_none=True) for server in context.settings.relay.ice_servers
        ],
    )


@router.post("/grants/view", response_model=ViewGrantOut, summary="A grant to watch streams")
async def view_grant(
    body: ViewGrantIn, request: Request, context: Ctx, db_session: DbSession, user: Watcher
) -> ViewGrantOut:
    token, expires_at = await service.grant_view(
        db_session=db_session,
        signer=context.grants,
        viewer=user,
        stream_ids=body.stream_ids,
        minutes=context.settings.auth.view_grant_minutes,
        actor=actor_of(user, request),
    )
    relay_url = context.settings.relay_url
    return ViewGrantOut(
        grant=token,
        expires_at=expires_at,
        streams=[
            ViewableStream(stream_id=sid, whep_url=f"{relay_url}/whep/{sid}") for sid in body.stream_ids
        ],
    )


@router.get(
    "/incidents/{incident_id}/streams",
    response_model=list[StreamOut],
    summary="The live streams of an incident's officers",
)
async def incident_streams(
    incident_id: Id, context: Ctx, db_session: DbSession, user: IncidentWatcher
) -> list[StreamOut]:
    incident = await incidents.get_visible(db_session=db_session, person=user, incident_id=incident_id)
    live = await service.live_of(db_session=db_session, officer_ids=[o.id for o in incident.officers])
    return [service.stream_out(stream, context.settings.relay_url) for stream in live]


@router.post(
    "/incidents/{incident_id}/grants/view",
    response_model=ViewGrantOut,
    summary="A grant to watch an incident's streams (audited)",
)
async def incident_view_grant(
    incident_id: Id,
    body: IncidentViewGrantIn,
    request: Request,
    context: Ctx,
    db_session: DbSession,
    user: IncidentWatcher,
) -> ViewGrantOut:
    incident = await incidents.get_visible(db_session=db_session, person=user, incident_id=incident_id)
    token, stream_ids, expires_at = await service.grant_view_of_officers(
        db_session=db_session,
        signer=context.grants,
        viewer=user,
        officer_ids=[officer.id for officer in incident.officers],
        stream_ids=body.stream_ids,
        minutes=context.settings.auth.view_grant_minutes,
    )
    await record_success(
        db_session,
        actor_of(user, request),
        AuditAction.INCIDENT_VIEW_GRANT,
        f"incident:{incident_id}",
        {"streams": stream_ids},
    )
    await db_session.commit()
    relay_url = context.settings.relay_url
    return ViewGrantOut(
        grant=token,
        expires_at=expires_at,
        streams=[ViewableStream(stream_id=sid, whep_url=f"{relay_url}/whep/{sid}") for sid in stream_ids],
    )
