from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dispatch_server.field_ops.models import FieldOperationStatus
from dispatch_server.ids import Id
from dispatch_server.paging import Page
from dispatch_server.people.schemas import UserOut


class FieldOperationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_number: str = Field(min_length=1, max_length=64, description="The case it enforces.")
    place: str = Field(min_length=1, max_length=200, description="Where the team goes.")
    team_ids: list[Id] = Field(min_length=1, max_length=50, description="The field officers who go.")
    planned_start: AwareDatetime
    planned_end: AwareDatetime = Field(description="After planned_start, and not in the past.")
    streaming_required: bool = Field(
        True, description="The team's cameras must stream throughout (R8): alerts when they do not."
    )
    incident_id: Id | None = Field(None, description="The incident it belongs to, if any.")


class FieldOperationEndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=2000, description="How it went.")


class FieldOperationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    case_number: str
    place: str
    incident_id: int | None
    team: list[UserOut]
    planned_start: datetime
    planned_end: datetime
    started_at: datetime | None
    ended_at: datetime | None
    status: FieldOperationStatus
    streaming_required: bool
    created_by: UserOut
    created_at: datetime
    end_note: str


class FieldOperationPage(Page[FieldOperationOut]):
    """Field operations, newest first."""
