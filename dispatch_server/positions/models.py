"""Positions (R9): every fix an officer's device reported (the track), and the newest fix of each
person, kept in a row of its own so that the wall's "where is everyone" is one small read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from dispatch_server.db import Base, UtcDateTime

TrackId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit on PostgreSQL (thousands of fixes a second add up); SQLite's rowid is 64-bit already."""


class PositionFix(Base):
    """One fix of the track, as the device reported it. Only ever inserted, in batches (see
    :mod:`dispatch_server.positions.recorder`)."""

    __tablename__ = "position"
    __table_args__ = (Index("ix_position_person_at", "person_id", "at", "id"),)

    id: Mapped[int] = mapped_column(TrackId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    """When the device took the fix, by the device's clock."""
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    """When this server accepted it, by the server's clock."""
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float] = mapped_column(Float)
    heading_deg: Mapped[float | None] = mapped_column(Float, default=None)
    speed_mps: Mapped[float | None] = mapped_column(Float, default=None)


class LastPosition(Base):
    """A person's newest fix (by the device's time): written by an upsert in each batch that
    brings a newer one, never moved back by a late, older fix."""

    __tablename__ = "last_position"

    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float] = mapped_column(Float)
    heading_deg: Mapped[float | None] = mapped_column(Float, default=None)
    speed_mps: Mapped[float | None] = mapped_column(Float, default=None)
