"""Escalation (R4, R6): a directive's target that has not acknowledged by the deadline is reported
to the incident's commander (else the issuer), then to the leader on duty; and an incident reported
up by a person, to the leader on duty or to the upper court. Each carries the escalation package
that was sent, as canonical JSON with its SHA-256, so it stays evidence of what the recipients saw."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime
from dispatch_server.people.models import Person


class EscalationLevel(enum.StrEnum):
    """Whom an escalation goes to, in the order they are tried."""

    COMMANDER = "commander"
    """The incident's commander, or the directive's issuer when it has none."""
    LEADER = "leader"
    """The court leader on duty."""


LEVELS = (EscalationLevel.COMMANDER, EscalationLevel.LEADER)
"""``AckTimer.level`` n means the first n of these have fired."""


class AckTimer(Base):
    """When a directive target's next escalation is due: the scheduler's whole state, in SQL, so
    that it survives restarts and is shared by every dispatch process.

    ``level`` counts the escalations made so far; ``due_at`` is None once there is nothing left to
    do (acknowledged, or escalated to the top). Claiming an escalation is one conditional UPDATE
    on ``(target_id, level)``: whichever process makes it fires it, the others change nothing."""

    __tablename__ = "ack_timer"

    target_id: Mapped[int] = mapped_column(
        ForeignKey("directive_target.id", ondelete="CASCADE"), primary_key=True
    )
    directive_id: Mapped[int] = mapped_column(ForeignKey("directive.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    level: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class Escalation(Base):
    """One escalation as it fired."""

    __tablename__ = "escalation"
    __table_args__ = (UniqueConstraint("directive_id", "person_id", "level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    directive_id: Mapped[int] = mapped_column(ForeignKey("directive.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    """The target that did not acknowledge in time."""
    level: Mapped[EscalationLevel] = mapped_column(Enum(EscalationLevel, native_enum=False, length=16))
    to_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """Whom it went to; None when there was nobody (no leader registered): the command room saw it."""
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"), default=None, index=True)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    fired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    fired_by: Mapped[str] = mapped_column(String(128), default="")
    """Which dispatch process fired it (host:pid), for the operators."""
    package: Mapped[str | None] = mapped_column(Text, default=None)
    """The escalation package sent with it (canonical JSON: the directive, the target, the
    incident's summary); None for escalations fired before packages existed."""

    person: Mapped[Person] = relationship(foreign_keys=[person_id], lazy="joined")
    to_person: Mapped[Person | None] = relationship(foreign_keys=[to_person_id], lazy="joined")


class EscalationTarget(enum.StrEnum):
    """Whom a person reports an incident up to (R6)."""

    LEADER_ON_DUTY = "leader_on_duty"
    """The court leader on duty (层报院领导): who holds the leader-on-duty post, else the first
    active leader."""
    UPPER_COURT = "upper_court"
    """The upper court's command center (请求上级法院执行指挥中心现场指挥): its observers, with whom
    the incident is then shared, so that they see its streams and may direct its officers."""


class IncidentEscalation(Base):
    """An incident reported up by a person, with the package built and sent at that moment."""

    __tablename__ = "incident_escalation"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    target: Mapped[EscalationTarget] = mapped_column(Enum(EscalationTarget, native_enum=False, length=24))
    reason: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    package: Mapped[str] = mapped_column(Text)
    """The escalation package as sent: canonical JSON."""
    package_sha256: Mapped[str] = mapped_column(String(64))
    """SHA-256 of ``package``, also in the audit record of the escalation."""

    requested_by: Mapped[Person] = relationship(lazy="joined")
    recipients: Mapped[list[EscalationRecipient]] = relationship(
        lazy="selectin", order_by="EscalationRecipient.id", cascade="all, delete-orphan"
    )


class EscalationRecipient(Base):
    """Someone an incident escalation went to, and when they acknowledged receiving it."""

    __tablename__ = "incident_escalation_recipient"
    __table_args__ = (UniqueConstraint("escalation_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    escalation_id: Mapped[int] = mapped_column(ForeignKey("incident_escalation.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    person: Mapped[Person] = relationship(lazy="joined")
