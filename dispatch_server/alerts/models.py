"""Alerts: one row per alert as it was raised, acknowledged and resolved.

At most one alert of a kind is open per subject: a partial unique index on ``(kind, subject)``
over the rows not yet resolved (SQLite and PostgreSQL both have them). Raising an alert that is
already open, from any number of tasks or dispatch processes at once, leaves one row."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Float, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime
from dispatch_server.people.models import Person


class AlertKind(enum.StrEnum):
    SOS = "sos"
    """An officer pressed SOS (R9)."""
    STREAM_LOST = "stream_lost"
    """During a field operation, a team member's stream ended (R8)."""
    STREAM_FROZEN = "stream_frozen"
    STREAM_BLACK = "stream_black"
    STREAM_COVERED = "stream_covered"
    FIELD_OP_NO_STREAM = "field_op_no_stream"
    """During a field operation that requires streaming, a team member has had no live stream for
    longer than ``alerts.no_stream_seconds`` (R8)."""
    ACK_OVERDUE = "ack_overdue"
    """A directive's target did not acknowledge in time and was escalated (R4)."""
    EMPTY_SEAT = "empty_seat"
    """Nobody on duty during working hours (R10)."""
    STORAGE = "storage"
    """The recordings disk is nearly full, or a recording write failed (R2)."""


class AlertLevel(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(Base):
    __tablename__ = "alert"
    __table_args__ = (
        Index(
            "uq_alert_open_kind_subject",
            "kind",
            "subject",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_alert_resolved_at_id", "resolved_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AlertKind] = mapped_column(Enum(AlertKind, native_enum=False, length=32), index=True)
    level: Mapped[AlertLevel] = mapped_column(Enum(AlertLevel, native_enum=False, length=16))
    message: Mapped[str] = mapped_column(Text)
    """One line a person can read."""
    subject: Mapped[str] = mapped_column(String(128))
    """What it is about, as a key: ``field_op:12:person:3``, ``seat:command-desk``, ``sos:person:3``.
    Rules find their own alerts again by it."""
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"), default=None, index=True)
    field_operation_id: Mapped[int | None] = mapped_column(default=None, index=True)
    """The field operation it arose in (no foreign key: alerts do not depend on field operations)."""
    stream_id: Mapped[str | None] = mapped_column(String(96), default=None)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """Whom it is about (the officer in trouble, the target that did not acknowledge)."""
    latitude: Mapped[float | None] = mapped_column(Float, default=None)
    longitude: Mapped[float | None] = mapped_column(Float, default=None)
    accuracy_m: Mapped[float | None] = mapped_column(Float, default=None)
    """Where it happened, when known (an SOS with the phone's position)."""
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    acknowledged_note: Mapped[str] = mapped_column(Text, default="")
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """None when it cleared itself (the stream came back, the seat was filled)."""
    resolved_note: Mapped[str] = mapped_column(Text, default="")

    person: Mapped[Person | None] = relationship(foreign_keys=[person_id], lazy="joined")
    acknowledged_by: Mapped[Person | None] = relationship(foreign_keys=[acknowledged_by_id], lazy="joined")
    resolved_by: Mapped[Person | None] = relationship(foreign_keys=[resolved_by_id], lazy="joined")

    @property
    def open(self) -> bool:
        return self.resolved_at is None
