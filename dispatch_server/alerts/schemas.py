from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dispatch_server.alerts.models import AlertKind, AlertLevel
from dispatch_server.paging import Page
from dispatch_server.people.schemas import UserOut


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: AlertKind
    level: AlertLevel
    message: str
    subject: str
    incident_id: int | None
    field_operation_id: int | None
    stream_id: str | None
    person: UserOut | None = Field(description="Whom it is about (the officer in trouble, ...).")
    latitude: float | None
    longitude: float | None
    accuracy_m: float | None
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: UserOut | None
    acknowledged_note: str
    resolved_at: datetime | None
    resolved_by: UserOut | None = Field(description="None when it cleared itself or is still open.")
    resolved_note: str


class AlertPage(Page[AlertOut]):
    """Alerts, newest first."""


class AlertNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000, description="What was done, or why.")


class Position(BaseModel):
    """Where an officer is, as the phone or bodycam reports it (WGS 84)."""

    model_config = ConfigDict(extra="forbid")

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000, description="Radius of uncertainty, metres.")


class SosIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    position: Position | None = Field(None, description="Where the officer is, if the device knows.")
    note: str = Field("", max_length=500, description="A few words, if there is time.")
