from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from dispatch_server.audit.models import AuditAction
from dispatch_server.audit.views import actor_of, record_success
from dispatch_server.auth.deps import Ctx, DbSession, Now, require_roles
from dispatch_server.errors import Invalid
from dispatch_server.ids import Id
from dispatch_server.people import service
from dispatch_server.people.models import WATCH_ROLES, Person, Role
from dispatch_server.people.schemas import PersonIn, PersonOut, PersonPatch, UserOut
from dispatch_server.units import service as units

router = APIRouter(prefix="/api", tags=["people"])

Admin = Annotated[Person, Depends(require_roles(Role.ADMIN))]


@router.get("/people", response_model=list[PersonOut], summary="People, optionally of one role or unit")
async def list_people(
    context: Ctx,
    db_session: DbSession,
    user: Annotated[Person, Depends(require_roles(*WATCH_ROLES))],
    role: Role | None = None,
    unit_id: Annotated[Id | None, Query(description="Only people of this unit or its sub-units.")] = None,
    include_disabled: Annotated[bool, Query(description="Disabled accounts too (admins only).")] = False,
) -> list[PersonOut]:
    subtree = None
    if unit_id is not None:
        await units.get(db_session=db_session, unit_id=unit_id)
        subtree = await units.subtree(db_session=db_session, unit_id=unit_id)
    rows = await service.list_people(
        db_session=db_session,
        role=role,
        unit_ids=subtree,
        include_disabled=include_disabled and user.role is Role.ADMIN,
    )
    return [
        PersonOut.model_validate(person).model_copy(update={"online": context.hub.is_online(person.id)})
        for person in rows
    ]


@router.post("/people", response_model=UserOut, status_code=201, summary="Create an account (admins only)")
async def create_person(body: PersonIn, request: Request, db_session: DbSession, user: Admin) -> UserOut:
    person = await service.create(
        db_session=db_session,
        username=body.username,
        display_name=body.display_name.strip() or body.username,
        role=body.role,
        password=body.password,
        unit_id=body.unit_id,
    )
    await record_success(
        db_session,
        actor_of(user, request),
        AuditAction.PERSON_CREATE,
        f"person:{person.id}",
        {"username": person.username, "role": person.role.value, "unit_id": person.unit_id},
    )
    await db_session.commit()
    return UserOut.model_validate(person)


@router.patch(
    "/people/{person_id}",
    response_model=PersonOut,
    summary="Rename, move to a unit, disable or enable an account (admins only)",
)
async def update_person(
    person_id: Id,
    body: PersonPatch,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Admin,
) -> PersonOut:
    if person_id == user.id and body.active is False:
        raise Invalid("an admin cannot disable its own account")
    person, changed = await service.update(
        db_session=db_session, person_id=person_id, changes=body.model_dump(exclude_unset=True), now=now
    )
    if changed:
        await record_success(
            db_session, actor_of(user, request), AuditAction.PERSON_UPDATE, f"person:{person.id}", changed
        )
    await db_session.commit()
    out = PersonOut.model_validate(person)
    return out.model_copy(update={"online": context.hub.is_online(person.id)})
