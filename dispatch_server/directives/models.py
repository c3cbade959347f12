from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime, utcnow
from dispatch_server.escalation.models import AckTimer
from dispatch_server.incidents.models import DirectiveIncident
from dispatch_server.people.models import Person
from dispatch_server.units.models import Unit


class TargetState(enum.StrEnum):
    """How far one target has got: sent -> delivered -> acknowledged -> done (only forward)."""

    SENT = "sent"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    DONE = "done"
    """The target reported it carried the directive out (after acknowledging it)."""


OPEN_STATES = (TargetState.SENT, TargetState.DELIVERED)
"""Not acknowledged yet: pending on the target's device, escalated when the deadline passes."""


class TargetScope(enum.StrEnum):
    """Whom a directive was addressed to, as the issuer put it. Its targets are always people: a
    unit or an incident is expanded to the people in it (on it) when it is issued."""

    PEOPLE = "people"
    UNIT = "unit"
    INCIDENT = "incident"


class DirectiveOrigin(enum.StrEnum):
    """Where a directive comes from (R6)."""

    CENTER = "center"
    """This court's command center."""
    UPPER_COURT = "upper_court"
    """The upper court's command center (上级法院执行指挥中心)."""


class Directive(Base):
    """An order (R4) to one or more people, with an acknowledgement deadline and, optionally, a
    deadline to have it done."""

    __tablename__ = "directive"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    """Acknowledge by then, or be escalated."""
    complete_by: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    """Report it done by then (optional); a target that has not is overdue."""
    scope: Mapped[TargetScope] = mapped_column(
        Enum(TargetScope, native_enum=False, length=16), default=TargetScope.PEOPLE, server_default="PEOPLE"
    )
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), default=None, index=True)
    """With the scope ``unit``: the unit it went to (its people at issue time are the targets)."""
    origin: Mapped[DirectiveOrigin] = mapped_column(
        Enum(DirectiveOrigin, native_enum=False, length=16),
        default=DirectiveOrigin.CENTER,
        server_default="CENTER",
    )

    issuer: Mapped[Person] = relationship(lazy="joined")
    unit: Mapped[Unit | None] = relationship(lazy="joined")
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
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    directive: Mapped[Directive] = relationship(back_populates="targets")
    person: Mapped[Person] = relationship(lazy="joined")
    timer: Mapped[AckTimer | None] = relationship(lazy="joined")

    @property
    def escalations(self) -> int:
        """How many times its missing acknowledgement has been escalated (0, 1 or 2)."""
        return self.timer.level if self.timer is not None else 0


def is_overdue(
    state: TargetState, *, deadline: datetime, complete_by: datetime | None, now: datetime
) -> bool:
    """Whether a target is late at ``now``: not acknowledged by the deadline, or acknowledged but
    not done by the completion deadline."""
    if state in OPEN_STATES:
        return now >= deadline
    if state is TargetState.ACKNOWLEDGED:
        return complete_by is not None and now >= complete_by
    return False
