from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession
from dispatch_server.errors import Unauthorized
from dispatch_server.people import service as people
from dispatch_server.people.schemas import UserOut

router = APIRouter(prefix="/api", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserOut


@router.post("/auth/login", response_model=LoginOut, summary="Sign in with a username and password")
async def login(body: LoginIn, context: Ctx, db_session: DbSession) -> LoginOut:
    person = await people.authenticate(db_session=db_session, username=body.username, password=body.password)
    if person is None:
        raise Unauthorized("invalid username or password")
    token, _expires_at = context.tokens.issue(person.id, person.role)
    return LoginOut(
        access_token=token, expires_in=context.tokens.minutes * 60, user=UserOut.model_validate(person)
    )


@router.get("/me", response_model=UserOut, summary="The signed-in person")
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
