from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch_server.db import Base, UtcDateTime, utcnow

# BIGINT on PostgreSQL; INTEGER (the 64-bit rowid) on SQLite.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    """One server message as it was pushed (DESIGN.md 4): the record a reconnecting client reads."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_channel_id", "channel", "id"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=False)
    """Given by :class:`EventCounter`, so that ids become visible in increasing order."""
    channel: Mapped[str] = mapped_column(String(64))
    """Who it is for: ``person.<id>`` or ``command`` (see :mod:`dispatch_server.realtime.bus`)."""
    type: Mapped[str] = mapped_column(String(32))
    """The message's ``type``."""
    subject: Mapped[str | None] = mapped_column(String(128), index=True, default=None)
    """What it is about, e.g. ``directive:12`` or ``stream:<id>``."""
    payload: Mapped[str] = mapped_column(Text)
    """The message as JSON, without its ``event_id``."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class EventCounter(Base):
    """A single row holding the last event id given out. Taking ids with an UPDATE of this row
    locks it until the transaction ends, so events commit in id order on every backend: a reader
    that has seen id N has seen every id below N that will ever exist."""

    __tablename__ = "event_counter"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(EventId)
