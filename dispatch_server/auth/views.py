"""Signing in and out (R17): a short access token and a refresh token that renews it."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.views import client_address
from dispatch_server.auth import refresh, throttle
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession, Now
from dispatch_server.context import Context
from dispatch_server.errors import TooManyRequests, Unauthorized
from dispatch_server.people import service as people
from dispatch_server.people.models import Person
from dispatch_server.people.schemas import UserOut

router = APIRouter(prefix="/api", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LoginOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the access token is good for (at most 15 minutes).")
    refresh_token: str = Field(
        description="Exchange it at /api/auth/refresh for a new pair before the access token expires. "
        "Each is good once: a spent one shown again ends the sign-in."
    )
    refresh_expires_in: int = Field(description="Seconds until the sign-in ends and the password is asked.")
    user: UserOut


def _signed_in(context: Context, renewal: refresh.Renewal, now: datetime) -> LoginOut:
    person = renewal.person
    token, _expires_at = context.tokens.issue(person.id, person.role)
    return LoginOut(
        access_token=token,
        expires_in=context.tokens.minutes * 60,
        refresh_token=renewal.token,
        refresh_expires_in=max(0, int((renewal.expires_at - now).total_seconds())),
        user=UserOut.model_validate(person),
    )


@router.post("/auth/login", response_model=LoginOut, summary="Sign in with a username and password")
async def login(body: LoginIn, request: Request, context: Ctx, now: Now, db_session: DbSession) -> LoginOut:
    source = client_address(request)
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
    if person is None:
        await db_session.commit()
        raise Unauthorized("invalid username or password")
    lifetime = timedelta(hours=auth_settings.refresh_token_hours)
    renewal = refresh.start(db_session, person=person, now=now, lifetime=lifetime)
    await db_session.commit()
    return _signed_in(context, renewal, now)


@router.post(
    "/auth/refresh",
    response_model=LoginOut,
    summary="Exchange a refresh token for a new access token and refresh token",
    responses={401: {"description": "The sign-in has ended (expired, signed out, reused or disabled)"}},
)
async def refresh_tokens(
    body: RefreshIn, request: Request, context: Ctx, now: Now, db_session: DbSession
) -> LoginOut:
    renewal = await refresh.rotate(
        db_session=db_session, token=body.refresh_token, now=now, source=client_address(request)
    )
    return _signed_in(context, renewal, now)


@router.post("/auth/logout", status_code=204, summary="End a sign-in: its refresh token stops working")
async def logout(body: RefreshIn, request: Request, now: Now, db_session: DbSession) -> Response:
    """Always 204, whatever the token, so that the answer tells nothing. Access tokens already
    given out stay good until they expire (at most 15 minutes)."""
    row = await refresh.family_of(db_session=db_session, token=body.refresh_token)
    if row is not None:
        revoked = await refresh.revoke_family(db_session=db_session, family=row.family, now=now)
        if revoked:
            person = await db_session.get(Person, row.person_id)
            assert person is not None  # refresh tokens reference their person
            await audit.record(
                db_session=db_session,
                action=AuditAction.LOGOUT,
                outcome=Outcome.SUCCESS,
                actor=audit.Actor(
                    person_id=person.id,
                    name=person.username,
                    role=person.role.value,
                    source=client_address(request),
                ),
                object=f"person:{person.id}",
                detail={"family": row.family},
            )
        await db_session.commit()
    return Response(status_code=204)


@router.get("/me", response_model=UserOut, summary="The signed-in person")
async def me(user: CurrentUser) -> UserOut:
    return UserOut.model_validate(user)
