"""Devices (R15): the bodycams, phones and radios officers carry, and whom each is issued to."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime
from dispatch_server.people.models import Person


class DeviceKind(enum.StrEnum):
    BODYCAM = "bodycam"
    PHONE = "phone"
    RADIO = "radio"


class DeviceStatus(enum.StrEnum):
    IN_SERVICE = "in_service"
    """Working, issued or on the shelf."""
    IN_REPAIR = "in_repair"
    LOST = "lost"
    RETIRED = "retired"


class Device(Base):
    __tablename__ = "device"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[DeviceKind] = mapped_column(Enum(DeviceKind, native_enum=False, length=16), index=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    """The maker's serial number; unique."""
    label: Mapped[str] = mapped_column(String(128), default="")
    """What people call it, e.g. 'Bodycam 07'."""
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None, index=True)
    """Whom it is issued to; None when it is on the shelf."""
    status: Mapped[DeviceStatus] = mapped_column(
        Enum(DeviceStatus, native_enum=False, length=16), default=DeviceStatus.IN_SERVICE, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    person: Mapped[Person | None] = relationship(lazy="joined")
