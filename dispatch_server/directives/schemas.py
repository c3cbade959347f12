from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationInfo,
    model_validator,
)

from dispatch_server.db import utcnow
from dispatch_server.directives.models import DirectiveOrigin, TargetScope, TargetState, is_overdue
from dispatch_server.ids import Id
from dispatch_server.people.schemas import UserOut
from dispatch_server.units.schemas import UnitRef


class DirectiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_ids: list[Id] = Field(
        default_factory=list,
        max_length=500,
        description="People to send it to. Empty with a unit_id: everyone in the unit; empty with only "
        "an incident_id: everyone on the incident.",
    )
    unit_id: Id | None = Field(
        None,
        description="Send it to everyone in this unit and its sub-units, as they are when it is issued.",
    )
    incident_id: Id | None = Field(None, description="The incident it belongs to.")
    text: str = Field(min_length=1, max_length=2000, description="What they must do.")
    ack_deadline_seconds: int = Field(
        120,
        gt=0,
        le=24 * 3600,
        description="How long each target has to acknowledge it; then it is escalated.",
    )
    complete_by: AwareDatetime | None = Field(
        None,
        description="When it must be done (with a time zone); a target that has not reported it done "
        "by then is overdue. Not in the past, nor before the acknowledgement deadline.",
    )
    origin: DirectiveOrigin | None = Field(
        None,
        description="Where it comes from. Unset: the upper court for an upper-court observer, else this "
        "center; a center commander may record a directive relayed from the upper court.",
    )


class TargetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person: UserOut
    state: TargetState
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    done_at: datetime | None = None
    escalations: int = Field(0, description="How often a missing acknowledgement was escalated (0-2).")
    overdue: bool = Field(
        False,
        description="Late when this was sent: not acknowledged by the deadline, or not done by complete_by.",
    )


class DirectiveOut(BaseModel):
    """A directive as it stands. Built from the database row, ``overdue`` is worked out for the
    time in the validation context's ``now`` (the app's clock), else the system's; read back from a
    dict or JSON (the event log) it stays as it was when sent."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    issuer: UserOut
    created_at: datetime
    deadline: datetime
    complete_by: datetime | None = None
    scope: TargetScope = TargetScope.PEOPLE
    unit: UnitRef | None = None
    incident_id: int | None = None
    origin: DirectiveOrigin = DirectiveOrigin.CENTER
    targets: list[TargetOut]

    @model_validator(mode="wrap")
    @classmethod
    def _overdue(cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo) -> Self:
        """Work out ``overdue`` when built from the database row; keep it when read from a dict or
        JSON (the event log, a response being serialised)."""
        directive = handler(data)
        if info.mode == "json" or isinstance(data, dict | DirectiveOut):
            return directive
        now = (info.context or {}).get("now") or utcnow()
        for target in directive.targets:
            target.overdue = is_overdue(
                target.state, deadline=directive.deadline, complete_by=directive.complete_by, now=now
            )
        return directive
