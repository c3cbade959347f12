from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from dispatch_server.audit.models import AuditAction
from dispatch_server.audit.views import actor_of, record_success
from dispatch_server.auth.deps import DbSession, Now, require_roles
from dispatch_server.devices import service
from dispatch_server.devices.models import DeviceKind, DeviceStatus
from dispatch_server.devices.schemas import DeviceIn, DeviceOut, DevicePage, DevicePatch
from dispatch_server.ids import Id
from dispatch_server.paging import Paging
from dispatch_server.people.models import WATCH_ROLES, Person, Role

router = APIRouter(prefix="/api/devices", tags=["devices"])

Reader = Annotated[Person, Depends(require_roles(*WATCH_ROLES))]
Admin = Annotated[Person, Depends(require_roles(Role.ADMIN))]


async def _audit(
    db_session: DbSession, request: Request, user: Person, action: AuditAction, device_id: Id, detail: Any
) -> None:
    await record_success(db_session, actor_of(user, request), action, f"device:{device_id}", detail)


@router.get("", response_model=DevicePage, summary="Devices, a page at a time")
async def list_devices(
    db_session: DbSession,
    _user: Reader,
    page: Paging,
    kind: DeviceKind | None = None,
    status: DeviceStatus | None = None,
    person_id: Annotated[Id | None, Query(description="Only devices issued to this person.")] = None,
    unit_id: Annotated[Id | None, Query(description="Only those issued to people of this unit.")] = None,
    issued: Annotated[bool | None, Query(description="true: issued to someone; false: on the shelf.")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of the serial or label.")] = None,
) -> DevicePage:
    devices, total = await service.list_devices(
        db_session=db_session,
        kind=kind,
        status=status,
        person_id=person_id,
        unit_id=unit_id,
        issued=issued,
        text=q,
        limit=page.limit,
        offset=page.offset,
    )
    return DevicePage.of([DeviceOut.model_validate(d) for d in devices], total, page)


@router.post("", response_model=DeviceOut, status_code=201, summary="Register a device")
async def create_device(
    body: DeviceIn, request: Request, now: Now, db_session: DbSession, user: Admin
) -> DeviceOut:
    device = await service.create(db_session=db_session, now=now, **body.model_dump())
    await _audit(
        db_session, request, user, AuditAction.DEVICE_CREATE, device.id, body.model_dump(mode="json")
    )
    await db_session.commit()
    return DeviceOut.model_validate(device)


@router.get("/{device_id}", response_model=DeviceOut, summary="One device")
async def get_device(device_id: Id, db_session: DbSession, _user: Reader) -> DeviceOut:
    return DeviceOut.model_validate(await service.get(db_session=db_session, device_id=device_id))


@router.patch("/{device_id}", response_model=DeviceOut, summary="Issue, take back or change a device")
async def update_device(
    device_id: Id, body: DevicePatch, request: Request, now: Now, db_session: DbSession, user: Admin
) -> DeviceOut:
    device, changed = await service.update(
        db_session=db_session, device_id=device_id, changes=body.model_dump(exclude_unset=True), now=now
    )
    if changed:
        detail = {k: v.value if hasattr(v, "value") else v for k, v in changed.items()}
        await _audit(db_session, request, user, AuditAction.DEVICE_UPDATE, device.id, detail)
    await db_session.commit()
    return DeviceOut.model_validate(device)


@router.delete("/{device_id}", status_code=204, summary="Remove a device registered by mistake")
async def delete_device(device_id: Id, request: Request, db_session: DbSession, user: Admin) -> Response:
    device = await service.delete(db_session=db_session, device_id=device_id)
    detail = {"kind": device.kind.value, "serial": device.serial}
    await _audit(db_session, request, user, AuditAction.DEVICE_DELETE, device_id, detail)
    await db_session.commit()
    return Response(status_code=204)
