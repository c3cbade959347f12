"""Incidents (R5): one record per major, sensitive, group or emergency incident, the officers on
it, who outside the center it is shared with, its notes, and the timeline of everything about it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime
from dispatch_server.people.models import Person


class IncidentKind(enum.StrEnum):
    ROUTINE = "routine"
    MAJOR = "major"
    SENSITIVE = "sensitive"
    GROUP = "group"
    EMERGENCY = "emergency"


class IncidentStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class TimelineKind(enum.StrEnum):
    """What a timeline entry records."""

    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"
    REOPENED = "reopened"
    OFFICER_ASSIGNED = "officer_assigned"
    OFFICER_REMOVED = "officer_removed"
    SHARED = "shared"
    UNSHARED = "unshared"
    NOTE = "note"
    DIRECTIVE = "directive"
    ACKNOWLEDGED = "acknowledged"
    DONE = "done"
    """A directive's target reported it done."""
    ESCALATION = "escalation"
    """A target did not acknowledge a directive in time and was escalated (automatic)."""
    ESCALATED = "escalated"
    """Someone reported the incident up, to the leader on duty or the upper court (R6)."""
    ESCALATION_RECEIVED = "escalation_received"
    """A recipient acknowledged receiving an escalation."""
    STREAM_UP = "stream_up"
    STREAM_DOWN = "stream_down"
    ALERT_RAISED = "alert_raised"
    """An alert about the incident, one of its officers or one of its field operations."""
    ALERT_RESOLVED = "alert_resolved"
    FIELD_OP_STARTED = "field_op_started"
    FIELD_OP_ENDED = "field_op_ended"
    HOLD_PLACED = "hold_placed"
    """An evidence hold on the incident's recordings, or on a stream it names (R2)."""
    HOLD_LIFTED = "hold_lifted"


class Incident(Base):
    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[IncidentKind] = mapped_column(Enum(IncidentKind, native_enum=False, length=16), index=True)
    case_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    """The court's case number, e.g. (2026)京0105执1234号; empty when there is none yet."""
    title: Mapped[str] = mapped_column(String(200))
    place: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[IncidentStatus] = mapped_column(
        Enum(IncidentStatus, native_enum=False, length=16), default=IncidentStatus.OPEN, index=True
    )
    commander_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """Who runs it; escalations go to them first (else to the directive's issuer)."""
    opened_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    commander: Mapped[Person | None] = relationship(foreign_keys=[commander_id], lazy="joined")
    opened_by: Mapped[Person] = relationship(foreign_keys=[opened_by_id], lazy="joined")
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="incident", lazy="selectin", order_by="Assignment.id", cascade="all, delete-orphan"
    )

    @property
    def officers(self) -> list[Person]:
        return [assignment.person for assignment in self.assignments]


class Assignment(Base):
    """An officer on an incident."""

    __tablename__ = "incident_officer"
    __table_args__ = (UniqueConstraint("incident_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)

    incident: Mapped[Incident] = relationship(back_populates="assignments")
    person: Mapped[Person] = relationship(lazy="joined")


class Share(Base):
    """An incident shared with someone outside the center (an upper-court observer), who then
    sees it and nothing else."""

    __tablename__ = "incident_share"
    __table_args__ = (UniqueConstraint("incident_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    shared_at: Mapped[datetime] = mapped_column(UtcDateTime)


class DirectiveIncident(Base):
    """Which incident a directive belongs to. A table of its own, so that databases made before
    incidents existed simply gain it."""

    __tablename__ = "directive_incident"

    directive_id: Mapped[int] = mapped_column(
        ForeignKey("directive.id", ondelete="CASCADE"), primary_key=True
    )
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)


class TimelineEntry(Base):
    """One thing that happened on an incident, written in the transaction that made it happen."""

    __tablename__ = "incident_timeline"
    __table_args__ = (Index("ix_incident_timeline_incident_id_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[TimelineKind] = mapped_column(Enum(TimelineKind, native_enum=False, length=24))
    summary: Mapped[str] = mapped_column(Text)
    """One line a person can read."""
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """Who did it (None: the system, e.g. an escalation or the relay)."""
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """Whom it is about (the officer assigned, the target that acknowledged, ...)."""
    directive_id: Mapped[int | None] = mapped_column(default=None)
    escalation_id: Mapped[int | None] = mapped_column(default=None)
    stream_id: Mapped[str | None] = mapped_column(String(96), default=None)
    subject: Mapped[str | None] = mapped_column(String(64), default=None)
    """What else it is about, as the event log names it: ``alert:12``, ``field_op:3``, ``hold:5``,
    ``incident_escalation:7``."""

    actor: Mapped[Person | None] = relationship(foreign_keys=[actor_id], lazy="joined")
    person: Mapped[Person | None] = relationship(foreign_keys=[person_id], lazy="joined")
