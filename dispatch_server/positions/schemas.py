from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dispatch_server.ids import Id
from dispatch_server.paging import Page
from dispatch_server.people.schemas import UserOut

MAX_ACCURACY_M = 100_000.0
MAX_SPEED_MPS = 150.0
"""540 km/h: anything faster is a broken fix, not an officer."""


class PositionReport(BaseModel):
    """One fix as a device reports it (WGS 84). The same fields arrive over the websocket
    (``{"type": "position", ...}``) and ``POST /api/positions``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    latitude: float = Field(ge=-90, le=90, description="Degrees north, -90 to 90.")
    longitude: float = Field(ge=-180, le=180, description="Degrees east, -180 to 180.")
    accuracy_m: float = Field(ge=0, le=MAX_ACCURACY_M, description="Radius of uncertainty, metres.")
    heading_deg: float | None = Field(
        None, ge=0, lt=360, description="Direction of travel, degrees from north."
    )
    speed_mps: float | None = Field(None, ge=0, le=MAX_SPEED_MPS, description="Speed over ground, m/s.")
    at: AwareDatetime = Field(
        description="When the device took the fix, by its clock, with its zone. Not more than "
        "positions.max_future_seconds ahead of the server, nor older than positions.max_age_hours."
    )


class PositionIn(PositionReport):
    person_id: Id | None = Field(
        None,
        description="Whose position: unset for the sender's own. Field officers may only report "
        "their own; the command room may enter one radioed in (audited).",
    )


class PositionBatchIn(BaseModel):
    """Fixes a device kept while it had no network, sent together when it is back."""

    model_config = ConfigDict(extra="forbid")

    positions: list[PositionIn] = Field(min_length=1, max_length=1000)


class PositionsAccepted(BaseModel):
    accepted: int = Field(description="Fixes accepted: stored within a second (see positions.flush_seconds).")


class PositionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person_id: int
    latitude: float
    longitude: float
    accuracy_m: float
    heading_deg: float | None
    speed_mps: float | None
    at: datetime = Field(description="When the device took the fix, by its clock.")
    received_at: datetime = Field(description="When the server accepted it.")


class LatestPositionOut(PositionOut):
    person: UserOut


class LatestPositionPage(Page[LatestPositionOut]): ...


class TrackPage(Page[PositionOut]):
    """A person's fixes in a time range, oldest first."""

    person_id: int
