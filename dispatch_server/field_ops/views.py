"""REST for field operations (外出执行, R8)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from dispatch_server.audit.views import actor_of
from dispatch_server.auth.deps import Ctx, DbSession, Now, require_roles
from dispatch_server.field_ops import service
from dispatch_server.field_ops.models import FieldOperationStatus
from dispatch_server.field_ops.schemas import (
    FieldOperationEndIn,
    FieldOperationIn,
    FieldOperationOut,
    FieldOperationPage,
)
from dispatch_server.ids import Id
from dispatch_server.paging import Paging
from dispatch_server.people.models import Person
from dispatch_server.realtime import eventlog

router = APIRouter(prefix="/api/field-operations", tags=["field operations"])

Reader = Annotated[Person, Depends(require_roles(*service.READ_ROLES))]
Manager = Annotated[Person, Depends(require_roles(*service.MANAGE_ROLES))]


@router.post("", response_model=FieldOperationOut, status_code=201, summary="Register a field operation")
async def create(
    body: FieldOperationIn, request: Request, context: Ctx, now: Now, db_session: DbSession, user: Manager
) -> FieldOperationOut:
    operation, events = await service.create(
        db_session=db_session,
        creator=user,
        case_number=body.case_number,
        place=body.place,
        team_ids=body.team_ids,
        planned_start=body.planned_start,
        planned_end=body.planned_end,
        streaming_required=body.streaming_required,
        incident_id=body.incident_id,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return FieldOperationOut.model_validate(operation)


@router.get(
    "",
    response_model=FieldOperationPage,
    summary="Field operations I may see, newest first, a page at a time",
)
async def list_field_operations(
    db_session: DbSession,
    user: Reader,
    page: Paging,
    status: FieldOperationStatus | None = None,
    incident_id: Id | None = None,
    person_id: Annotated[Id | None, Query(description="Only those this officer is on.")] = None,
    case_number: Annotated[str | None, Query(max_length=64)] = None,
) -> FieldOperationPage:
    items, total = await service.list_visible(
        db_session=db_session,
        person=user,
        status=status,
        incident_id=incident_id,
        member_id=person_id,
        case_number=case_number,
        limit=page.limit,
        offset=page.offset,
    )
    return FieldOperationPage.of([FieldOperationOut.model_validate(o) for o in items], total, page)


@router.get("/{field_operation_id}", response_model=FieldOperationOut, summary="One field operation")
async def get_field_operation(
    field_operation_id: Id, db_session: DbSession, user: Reader
) -> FieldOperationOut:
    operation = await service.get_visible(
        db_session=db_session, person=user, field_operation_id=field_operation_id
    )
    return FieldOperationOut.model_validate(operation)


@router.post(
    "/{field_operation_id}/start", response_model=FieldOperationOut, summary="The team sets out: supervise it"
)
async def start(
    field_operation_id: Id, request: Request, context: Ctx, now: Now, db_session: DbSession, user: Reader
) -> FieldOperationOut:
    operation, events = await service.start(
        db_session=db_session,
        person=user,
        field_operation_id=field_operation_id,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return FieldOperationOut.model_validate(operation)


@router.post("/{field_operation_id}/end", response_model=FieldOperationOut, summary="The team is back")
async def end(
    field_operation_id: Id,
    body: FieldOperationEndIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Reader,
) -> FieldOperationOut:
    operation, events = await service.end(
        db_session=db_session,
        person=user,
        field_operation_id=field_operation_id,
        note=body.note,
        now=now,
        actor=actor_of(user, request),
    )
    await eventlog.publish(bus=context.bus, events=events)
    return FieldOperationOut.model_validate(operation)
