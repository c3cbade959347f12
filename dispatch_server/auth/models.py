from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch_server.db import Base, UtcDateTime


class LoginFailure(Base):
    """One failed sign-in, kept to slow down password guessing (R17). The audit log holds the
    record; this table only counts, and old rows are pruned."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_username_at", "username", "at"),
        Index("ix_login_failure_source_at", "source", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class RefreshToken(Base):
    """One refresh token (R17), kept only as its SHA-256. Each sign-in starts a ``family``; every
    refresh spends the token presented and adds its successor to the family. A spent token shown
    again means it was copied: the whole family is revoked (OAuth 2.0 Security BCP, 4.14.2)."""

    __tablename__ = "refresh_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    """The sign-in it descends from: random, shared by each token and its successors."""
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    """When the sign-in ends: the same for the whole family."""
    spent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    """When it was exchanged for its successor."""
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    """When the family was ended: signed out, reuse detected, or the person disabled."""
