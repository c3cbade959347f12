from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dispatch_server.devices.models import DeviceKind, DeviceStatus
from dispatch_server.ids import Id
from dispatch_server.paging import Page
from dispatch_server.people.schemas import UserOut

SERIAL = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: DeviceKind
    serial: str = Field(pattern=SERIAL, description="Letters, digits, '.', '_', '/' or '-'; unique.")
    label: str = Field("", max_length=128)
    person_id: Id | None = Field(None, description="Whom it is issued to; unset: on the shelf.")
    status: DeviceStatus = DeviceStatus.IN_SERVICE


class DevicePatch(BaseModel):
    """Fields to change; those left out stay as they are (``person_id: null`` takes it back)."""

    model_config = ConfigDict(extra="forbid")

    kind: DeviceKind | None = None
    serial: str | None = Field(None, pattern=SERIAL)
    label: str | None = Field(None, max_length=128)
    person_id: Id | None = None
    status: DeviceStatus | None = None


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: DeviceKind
    serial: str
    label: str
    person: UserOut | None
    status: DeviceStatus
    created_at: datetime
    updated_at: datetime


class DevicePage(Page[DeviceOut]):
    """Devices."""
