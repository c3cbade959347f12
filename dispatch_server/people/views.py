from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from dispatch_server.auth.deps import Ctx, DbSession, require_roles
from dispatch_server.people import service
from dispatch_server.people.models import WATCH_ROLES, Person, Role
from dispatch_server.people.schemas import PersonIn, PersonOut, UserOut

router = APIRouter(prefix="/api", tags=["people"])


@router.get("/people", response_model=list[PersonOut], summary="People, optionally of one role")
async def list_people(
    context: Ctx,
    db_session: DbSession,
    _user: Annotated[Person, Depends(require_roles(*WATCH_ROLES))],
    role: Role | None = None,
) -> list[PersonOut]:
    rows = await service.list_people(db_session=db_session, role=role)
    return [
        PersonOut.model_validate(person).model_copy(update={"online": context.hub.is_online(person.id)})
        for person in rows
    ]


@router.post("/people", response_model=UserOut, status_code=201, summary="Create an account (admins only)")
async def create_person(
    body: PersonIn,
    db_session: DbSession,
    _user: Annotated[Person, Depends(require_roles(Role.ADMIN))],
) -> UserOut:
    person = await service.create(
        db_session=db_session,
        username=body.username,
        display_name=body.display_name.strip() or body.username,
        role=body.role,
        password=body.password,
    )
    await db_session.commit()
    return UserOut.model_validate(person)
