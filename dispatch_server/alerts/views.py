"""REST for alerts (R8, R9): the command room lists, acknowledges and resolves them; an officer
raises an SOS (also over the websocket, see :mod:`dispatch_server.realtime.views`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from dispatch_server.alerts import service, sos
from dispatch_server.alerts.models import AlertKind
from dispatch_server.alerts.schemas import AlertNoteIn, AlertOut, AlertPage, SosIn
from dispatch_server.audit.views import actor_of
from dispatch_server.auth.deps import Ctx, DbSession, Now, require_roles
from dispatch_server.ids import Id
from dispatch_server.paging import Paging
from dispatch_server.people.models import WATCH_ROLES, Person, Role
from dispatch_server.realtime import eventlog

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

ALERT_ROLES = WATCH_ROLES
"""Who sees and handles alerts: the command room (the roles that watch its channel)."""

Handler = Annotated[Person, Depends(require_roles(*ALERT_ROLES))]
Officer = Annotated[Person, Depends(require_roles(Role.FIELD_OFFICER))]


@router.get("", response_model=AlertPage, summary="Alerts, newest first, a page at a time")
async def list_alerts(
    db_session: DbSession,
    _user: Handler,
    page: Paging,
    state: Annotated[Literal["open", "all"], Query(description="Only the unresolved ones, or all.")] = "open",
    kind: AlertKind | None = None,
    incident_id: Id | None = None,
    field_operation_id: Id | None = None,
    person_id: Annotated[Id | None, Query(description="Only alerts about this person.")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Only alerts raised at or after this (a time with its zone).")
    ] = None,
) -> AlertPage:
    items, total = await service.list_alerts(
        db_session=db_session,
        open_only=state == "open",
        kind=kind,
        incident_id=incident_id,
        field_operation_id=field_operation_id,
        person_id=person_id,
        since=since,
        limit=page.limit,
        offset=page.offset,
    )
    return AlertPage.of([AlertOut.model_validate(a) for a in items], total, page)


@router.get("/{alert_id}", response_model=AlertOut, summary="One alert")
async def get_alert(alert_id: Id, db_session: DbSession, _user: Handler) -> AlertOut:
    return AlertOut.model_validate(await service.get(db_session=db_session, alert_id=alert_id))


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertOut,
    summary="Acknowledge an alert (again: no change)",
)
async def acknowledge(
    alert_id: Id,
    body: AlertNoteIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Handler,
) -> AlertOut:
    alert, events = await service.acknowledge(
        db_session=db_session,
        alert_id=alert_id,
        person=user,
        note=body.note,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return AlertOut.model_validate(alert)


@router.post("/{alert_id}/resolve", response_model=AlertOut, summary="Resolve an alert (again: no change)")
async def resolve(
    alert_id: Id,
    body: AlertNoteIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Handler,
) -> AlertOut:
    alert, events = await service.resolve(
        db_session=db_session,
        alert_id=alert_id,
        person=user,
        note=body.note,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return AlertOut.model_validate(alert)


@router.post(
    "/sos",
    response_model=AlertOut,
    status_code=201,
    summary="Call for help (R9): a critical alert for the command room",
    responses={200: {"description": "An SOS of this officer is open already: that one."}},
)
async def raise_sos(
    body: SosIn,
    request: Request,
    response: Response,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Officer,
) -> AlertOut:
    alert, events = await sos.raise_sos(
        db_session=db_session,
        officer=user,
        position=body.position,
        note=body.note,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    if not events:
        response.status_code = 200
    return AlertOut.model_validate(alert)
