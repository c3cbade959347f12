from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.views import client_address
from dispatch_server.auth import throttle
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession
from dispatch_server.errors import TooManyRequests, Unauthorized
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
async def login(body: LoginIn, request: Request, context: Ctx, db_session: DbSession) -> LoginOut:
    source = client_address(request)
    now = datetime.now(UTC)
    auth_settings = context.settings.auth
    try:
        await throttle.check(
            db_session=db_session, settings=auth_settings, username=body.username, source=source, now=now
        )
    except TooManyRequests:
        await audit.record(
            db_session=db_session,
            action=AuditAction.LOGIN,
            outcome=Outcome.DENIED,
            actor=audit.Actor(person_id=None, name="", role="", source=source),
            object="",
            detail={"username": body.username.strip().lower()[:64], "reason": "too many failed sign-ins"},
        )
        await db_session.commit()
        raise
    person = await people.authenticate(db_session=db_session, username=body.username, password=body.password)
    if person is None:
        await throttle.note_failure(
            db_session=db_session, settings=auth_settings, username=body.username, source=source, now=now
        )
    # Audited either way (R17). A failure names the username tried, never whether it exists.
    await audit.record(
        db_session=db_session,
        action=AuditAction.LOGIN,
        outcome=Outcome.SUCCESS if person is not None else Outcome.FAILURE,
        actor=audit.Actor(
            person_id=person.id if person is not None else None,
            name=person.username if person is not None else "",
            role=person.role.value if person is not None else "",
            source=source,
        ),
        object=f"person:{person.id}" if person is not None else "",
        detail={"username": body.username.strip().lower()[:64]},
    )
    await db_session.commit()
    if person is None:
        raise Unauthorized("invalid username or password")
    token, _expires_at = context.tokens.issue(person.id, person.role)
    return LoginOut(
        access_token=token, expires_in=context.tokens.minutes * 60, user=UserOut.model_validate(person)
    )


@router.get("/me", response_model=UserOut, summary="The signed-in person")
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
