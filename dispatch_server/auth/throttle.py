"""Failed sign-ins slow an attacker down (R17): too many for one username, or from one address,
within a window, and further attempts are refused with 429 before any password is checked.

The same limit applies to every username string, known or not, so the answer never tells
whether an account exists. Counted in SQL, so several dispatch processes share the count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.auth.models import LoginFailure
from dispatch_server.errors import TooManyRequests
from zhihui.settings import AuthSettings

__all__ = ["check", "note_failure"]


def _normal(username: str) -> str:
    return username.strip().lower()[:64]


async def check(
    *, db_session: AsyncSession, settings: AuthSettings, username: str, source: str, now: datetime
) -> None:
    """Raise :class:`TooManyRequests` if this username or address has failed too often lately."""
    since = now - timedelta(seconds=settings.login_window_seconds)
    for column, value, limit in (
        (LoginFailure.username, _normal(username), settings.login_failures_per_username),
        (LoginFailure.source, source[:64], settings.login_failures_per_source),
    ):
        count, oldest = (
            await db_session.execute(
                select(func.count(), func.min(LoginFailure.at)).where(
                    column == value, LoginFailure.at >= since
                )
            )
        ).one()
        if count >= limit:
            oldest_at = oldest if isinstance(oldest, datetime) else now
            if oldest_at.tzinfo is None:
                oldest_at = oldest_at.replace(tzinfo=now.tzinfo)
            wait = max(1, int((oldest_at - since).total_seconds()) + 1)
            raise TooManyRequests(f"too many failed sign-ins: try again in {wait} s", retry_after=wait)


async def note_failure(
    *, db_session: AsyncSession, settings: AuthSettings, username: str, source: str, now: datetime
) -> None:
    """Count a failed sign-in, and forget those older than the window."""
    db_session.add(LoginFailure(username=_normal(username), source=source[:64], at=now))
    await db_session.execute(
        delete(LoginFailure).where(LoginFailure.at < now - timedelta(seconds=settings.login_window_seconds))
    )
