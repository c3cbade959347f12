from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from dispatch_server.audit.models import AuditAction
from dispatch_server.audit.views import actor_of, record_success
from dispatch_server.auth.deps import DbSession, Now, require_roles
from dispatch_server.ids import Id
from dispatch_server.paging import Paging
from dispatch_server.people.models import WATCH_ROLES, Person, Role
from dispatch_server.units import service
from dispatch_server.units.models import Unit
from dispatch_server.units.schemas import UnitIn, UnitOut, UnitPage, UnitPatch

router = APIRouter(prefix="/api/units", tags=["units"])

Reader = Annotated[Person, Depends(require_roles(*WATCH_ROLES))]
"""The command room reads units (to direct them, and on the wall)."""
Admin = Annotated[Person, Depends(require_roles(Role.ADMIN))]
"""Only admins keep them."""


async def _out(db_session: DbSession, unit: Unit) -> UnitOut:
    counts = await service.member_counts(db_session=db_session, unit_ids=[unit.id])
    return UnitOut.model_validate(unit).model_copy(update={"members": counts.get(unit.id, 0)})


@router.get("", response_model=UnitPage, summary="Units by name, a page at a time")
async def list_units(
    db_session: DbSession,
    _user: Reader,
    page: Paging,
    parent_id: Annotated[Id | None, Query(description="Only the direct sub-units of this unit.")] = None,
    top_level: Annotated[bool, Query(description="Only units that are part of no other.")] = False,
    q: Annotated[str | None, Query(max_length=100, description="Words in the name.")] = None,
) -> UnitPage:
    units, total = await service.list_units(
        db_session=db_session,
        parent_id=parent_id,
        top_level=top_level,
        text=q,
        limit=page.limit,
        offset=page.offset,
    )
    counts = await service.member_counts(db_session=db_session, unit_ids=[unit.id for unit in units])
    items = [UnitOut.model_validate(u).model_copy(update={"members": counts.get(u.id, 0)}) for u in units]
    return UnitPage.of(items, total, page)


@router.post("", response_model=UnitOut, status_code=201, summary="Create a unit")
async def create_unit(
    body: UnitIn, request: Request, now: Now, db_session: DbSession, user: Admin
) -> UnitOut:
    unit = await service.create(db_session=db_session, name=body.name, parent_id=body.parent_id, now=now)
    await record_success(
        db_session,
        actor_of(user, request),
        AuditAction.UNIT_CREATE,
        f"unit:{unit.id}",
        {"name": unit.name, "parent_id": unit.parent_id},
    )
    await db_session.commit()
    return await _out(db_session, unit)


@router.get("/{unit_id}", response_model=UnitOut, summary="One unit")
async def get_unit(unit_id: Id, db_session: DbSession, _user: Reader) -> UnitOut:
    return await _out(db_session, await service.get(db_session=db_session, unit_id=unit_id))


@router.patch("/{unit_id}", response_model=UnitOut, summary="Rename a unit or move it under another")
async def update_unit(
    unit_id: Id, body: UnitPatch, request: Request, db_session: DbSession, user: Admin
) -> UnitOut:
    unit, changed = await service.update(
        db_session=db_session, unit_id=unit_id, changes=body.model_dump(exclude_unset=True)
    )
    if changed:
        await record_success(
            db_session, actor_of(user, request), AuditAction.UNIT_UPDATE, f"unit:{unit.id}", changed
        )
    await db_session.commit()
    return await _out(db_session, unit)


@router.delete("/{unit_id}", status_code=204, summary="Remove a unit nobody belongs to")
async def delete_unit(unit_id: Id, request: Request, db_session: DbSession, user: Admin) -> Response:
    unit = await service.delete(db_session=db_session, unit_id=unit_id)
    await record_success(
        db_session, actor_of(user, request), AuditAction.UNIT_DELETE, f"unit:{unit_id}", {"name": unit.name}
    )
    await db_session.commit()
    return Response(status_code=204)
