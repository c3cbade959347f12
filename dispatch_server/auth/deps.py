"""FastAPI dependencies: the database session, the signed-in person, role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.context import Context
from dispatch_server.errors import Forbidden, Unauthorized
from dispatch_server.people.models import Person, Role

__all__ = ["Ctx", "CurrentUser", "DbSession", "Now", "require_roles"]

_bearer = HTTPBearer(auto_error=False, description="An access token from /api/auth/login")


def get_context(request: Request) -> Context:
    return request.app.state.context  # type: ignore[no-any-return]


Ctx = Annotated[Context, Depends(get_context)]


def current_time(request: Request) -> datetime:
    """The time by the app's one clock (``app.state.clock``), so that tests can move it."""
    return request.app.state.clock.now()  # type: ignore[no-any-return]


Now = Annotated[datetime, Depends(current_time)]


async def get_db_session(context: Ctx) -> AsyncIterator[AsyncSession]:
    async with context.db.sessions() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db_session)]


async def get_current_user(
    context: Ctx,
    db_session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Person:
    claims = context.tokens.verify(credentials.credentials if credentials else None)
    person = await db_session.get(Person, claims.person_id)
    if person is None or not person.active:
        raise Unauthorized("this account is no longer active")
    return person


CurrentUser = Annotated[Person, Depends(get_current_user)]


def require_roles(*roles: Role) -> Callable[..., Coroutine[Any, Any, Person]]:
    allowed = frozenset(roles)

    async def check(user: CurrentUser) -> Person:
        if user.role not in allowed:
            raise Forbidden(f"a {user.role.value} may not do this")
        return user

    return check
