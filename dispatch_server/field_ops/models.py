from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime
from dispatch_server.people.models import Person


class FieldOperationStatus(enum.StrEnum):
    """Where a field operation stands, from its actual start and end."""

    PLANNED = "planned"
    ACTIVE = "active"
    ENDED = "ended"


class FieldOperation(Base):
    """One trip out to enforce (外出执行, R8): who goes, for which case, where, when."""

    __tablename__ = "field_operation"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_number: Mapped[str] = mapped_column(String(64), index=True)
    place: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"), default=None, index=True)
    planned_start: Mapped[datetime] = mapped_column(UtcDateTime)
    planned_end: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None, index=True)
    streaming_required: Mapped[bool] = mapped_column(default=True)
    """The team's bodycams must stream for the whole operation (R8); the rules alert when not."""
    created_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    end_note: Mapped[str] = mapped_column(Text, default="")

    created_by: Mapped[Person] = relationship(lazy="joined")
    members: Mapped[list[FieldOperationMember]] = relationship(
        lazy="selectin", order_by="FieldOperationMember.id", cascade="all, delete-orphan"
    )

    @property
    def team(self) -> list[Person]:
        return [member.person for member in self.members]

    @property
    def status(self) -> FieldOperationStatus:
        if self.started_at is None:
            return FieldOperationStatus.PLANNED
        return FieldOperationStatus.ACTIVE if self.ended_at is None else FieldOperationStatus.ENDED


class FieldOperationMember(Base):
    """An officer on a field operation's team."""

    __tablename__ = "field_operation_member"
    __table_args__ = (UniqueConstraint("field_operation_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    field_operation_id: Mapped[int] = mapped_column(ForeignKey("field_operation.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)

    person: Mapped[Person] = relationship(lazy="joined")
