from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime, utcnow
from dispatch_server.escalation.models import AckTimer
from dispatch_server.incidents.models import DirectiveIncident
from dispatch_server.people.models import Person


class TargetState(enum.StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"


class Directive(Base):
    """An order from the command room (R4), to one or more people, with an ack deadline."""

    __tablename__ = "directive"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)

    issuer: Mapped[Person] = relationship(lazy="joined")
    targets: Mapped[list[DirectiveTarget]] = relationship(
        back_populates="directive", lazy="selectin", order_by="DirectiveTarget.id"
    )
    incident_link: Mapped[DirectiveIncident | None] = relationship(lazy="joined")

    @property
    def incident_id(self) -> int | None:
        """The incident it was issued on, if any."""
        return self.incident_link.incident_id if self.incident_link is not None else None


class DirectiveTarget(Base):
    """One addressee of a directive and how far it has got with it."""

    __tablename__ = "directive_target"
    __table_args__ = (UniqueConstraint("directive_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    directive_id: Mapped[int] = mapped_column(ForeignKey("directive.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    state: Mapped[TargetState] = mapped_column(
        Enum(TargetState, native_enum=False, length=16), default=TargetState.SENT
    )
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    directive: Mapped[Directive] = relationship(back_populates="targets")
    person: Mapped[Person] = relationship(lazy="joined")
    timer: Mapped[AckTimer | None] = relationship(lazy="joined")

    @property
    def escalations(self) -> int:
        """How many times its missing acknowledgement has been escalated (0, 1 or 2)."""
        return self.timer.level if self.timer is not None else 0
