"""Refresh tokens (R17): a sign-in outlives its 15-minute access tokens without the password
being kept anywhere.

Login starts a *family* with one refresh token. :func:`rotate` spends the token presented and
gives its successor in the same family; the family ends when the sign-in does
(``auth.refresh_token_hours`` after the password was given), on logout, or when the person is
disabled. A spent token presented again means someone copied it: the whole family is revoked, so
neither the thief nor the owner can go on (the owner signs in again), and the attempt is audited.

Only SHA-256 hashes are stored: the database alone gives no usable token. Every refusal has the
same message, so that a token's answer tells nothing about the account behind it. Spending is a
conditional UPDATE, so two processes presented the same token at once cannot both succeed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.auth.models import RefreshToken
from dispatch_server.errors import Unauthorized
from dispatch_server.people.models import Person

__all__ = [
    "REFUSED",
    "Renewal",
    "family_of",
    "revoke_family",
    "revoke_person",
    "rotate",
    "start",
    "token_hash",
]

REFUSED = "the sign-in has ended: sign in again"
"""The one answer to every refresh token that is not good (unknown, spent, revoked, expired, or of
a disabled account)."""


@dataclass(frozen=True, slots=True)
class Renewal:
    """A refresh token just issued: the token itself (shown once, never stored) and its person."""

    token: str
    expires_at: datetime
    person: Person


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new(
    db_session: AsyncSession, *, person_id: int, family: str, now: datetime, expires_at: datetime
) -> str:
    token = secrets.token_urlsafe(32)
    db_session.add(
        RefreshToken(
            family=family,
            person_id=person_id,
            token_hash=token_hash(token),
            issued_at=now,
            expires_at=expires_at,
        )
    )
    return token


def start(db_session: AsyncSession, *, person: Person, now: datetime, lifetime: timedelta) -> Renewal:
    """A new family for a sign-in that just gave the right password (in the caller's transaction)."""
    expires_at = now + lifetime
    token = _new(
        db_session, person_id=person.id, family=secrets.token_hex(16), now=now, expires_at=expires_at
    )
    return Renewal(token=token, expires_at=expires_at, person=person)


async def rotate(*, db_session: AsyncSession, token: str, now: datetime, source: str) -> Renewal:
    """Spend ``token`` and return its successor; commits. :class:`Unauthorized` (after revoking the
    family, and auditing, when the token was spent already) for any token that is not good."""
    row = await db_session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash(token)))
    if row is None or (row.revoked_at is not None and row.spent_at is None):
        raise Unauthorized(REFUSED)
    family, person_id, expires_at = row.family, row.person_id, row.expires_at
    if row.spent_at is not None:
        await _reused(db_session, row, now=now, source=source)
        raise Unauthorized(REFUSED)
    if expires_at <= now:
        raise Unauthorized(REFUSED)
    person = await db_session.get(Person, person_id)
    if person is None or not person.active:
        await revoke_family(db_session=db_session, family=family, now=now)
        await db_session.commit()
        raise Unauthorized(REFUSED)
    spent: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.spent_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(spent_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # spent by a concurrent request between our read and now: a copy too
        await db_session.rollback()
        row = await db_session.scalar(select(RefreshToken).where(RefreshToken.id == row.id))
        assert row is not None
        await _reused(db_session, row, now=now, source=source)
        raise Unauthorized(REFUSED)
    successor = _new(db_session, person_id=person_id, family=family, now=now, expires_at=expires_at)
    await db_session.commit()
    return Renewal(token=successor, expires_at=expires_at, person=person)


async def _reused(db_session: AsyncSession, row: RefreshToken, *, now: datetime, source: str) -> None:
    """A spent token came back: end its family, audit it, commit."""
    revoked = await revoke_family(db_session=db_session, family=row.family, now=now)
    person = await db_session.get(Person, row.person_id)
    await audit.record(
        db_session=db_session,
        action=AuditAction.REFRESH_REUSE,
        outcome=Outcome.DENIED,
        actor=audit.Actor(
            person_id=row.person_id,
            name=person.username if person is not None else "",
            role=person.role.value if person is not None else "",
            source=source,
        ),
        object=f"person:{row.person_id}",
        detail={"family": row.family, "token_id": row.id, "revoked": revoked},
    )
    await db_session.commit()


async def revoke_family(*, db_session: AsyncSession, family: str, now: datetime) -> int:
    """End a sign-in (in the caller's transaction); how many of its tokens were not revoked yet."""
    return await _revoke(db_session, RefreshToken.family == family, now)


async def revoke_person(*, db_session: AsyncSession, person_id: int, now: datetime) -> int:
    """End every sign-in of a person (in the caller's transaction), e.g. when disabled."""
    return await _revoke(db_session, RefreshToken.person_id == person_id, now)


async def _revoke(db_session: AsyncSession, which: ColumnElement[bool], now: datetime) -> int:
    """Revoke the tokens ``which`` selects that are not revoked yet; how many."""
    result: CursorResult[Any] = await db_session.execute(  # type: ignore[assignment]
        update(RefreshToken)
        .where(which, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


async def family_of(*, db_session: AsyncSession, token: str) -> RefreshToken | None:
    """The stored row of a token (spent, revoked or not), if it is one of ours."""
    return await db_session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash(token)))
