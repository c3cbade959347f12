from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dispatch_server.directives.models import TargetState
from dispatch_server.people.schemas import UserOut


class DirectiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_ids: list[int] = Field(
        default_factory=list,
        max_length=500,
        description="People to send it to. Empty with an incident_id: everyone on the incident.",
    )
    incident_id: int | None = Field(None, description="The incident it belongs to.")
    text: str = Field(min_length=1, max_length=2000, description="What they must do.")
    ack_deadline_seconds: int = Field(
        120,
        gt=0,
        le=24 * 3600,
        description="How long each target has to acknowledge it; then it is escalated.",
    )


class TargetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person: UserOut
    state: TargetState
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    escalations: int = Field(0, description="How often a missing acknowledgement was escalated (0-2).")


class DirectiveOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    issuer: UserOut
    created_at: datetime
    deadline: datetime
    incident_id: int | None = None
    targets: list[TargetOut]
