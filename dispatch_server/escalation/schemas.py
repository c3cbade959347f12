from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dispatch_server.alerts.schemas import AlertOut
from dispatch_server.directives.schemas import DirectiveOut
from dispatch_server.escalation.models import EscalationLevel, EscalationTarget
from dispatch_server.ids import Id
from dispatch_server.incidents.models import IncidentKind, IncidentStatus
from dispatch_server.incidents.schemas import TimelineEntryOut
from dispatch_server.paging import Page
from dispatch_server.people.schemas import UserOut


class IncidentSummary(BaseModel):
    """The incident at a glance, as it stood when the package was built."""

    id: int
    kind: IncidentKind
    case_number: str
    title: str
    place: str
    status: IncidentStatus
    commander: UserOut | None
    opened_at: datetime
    open_seconds: int = Field(description="How long it had been open (until it closed, if it had).")
    officers: list[UserOut]


class LiveLink(BaseModel):
    """One of the incident's officers streaming live: where to watch it. A link, not a grant: the
    recipient asks for a grant (``view_grant_url``) with their own credentials."""

    stream_id: str
    officer: UserOut
    device: str
    started_at: datetime | None
    health: list[str] = Field(default_factory=list, description="Video health flags (R8); empty: fine.")
    whep_url: str
    wall_url: str = Field(description="The wall, opened on this incident and stream.")


class EscalationPackage(BaseModel):
    """What an escalation carries (R6): enough to take command without asking first."""

    built_at: datetime
    incident: IncidentSummary | None = Field(description="None: the directive belongs to no incident.")
    live: list[LiveLink] = Field(default_factory=list, description="The officers' live streams.")
    view_grant_url: str | None = Field(
        None, description="POST here (with stream_ids) for a grant to watch them."
    )
    directives: list[DirectiveOut] = Field(
        default_factory=list,
        description="Open directives (not done by every target), newest first, each target's state and "
        "whether it is overdue; for a missed acknowledgement, that directive.",
    )
    alerts: list[AlertOut] = Field(
        default_factory=list,
        description="Recent alerts about the incident, its officers or its field operations, newest first.",
    )
    timeline: list[TimelineEntryOut] = Field(
        default_factory=list, description="The incident's last timeline entries, oldest first."
    )
    target: UserOut | None = Field(
        None, description="For a missed acknowledgement: the target that did not acknowledge."
    )


def _parsed(value: Any) -> Any:
    """A package stored as canonical JSON text is read as the object it holds."""
    return json.loads(value) if isinstance(value, str) else value


class EscalationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    directive_id: int
    person: UserOut
    """The target that did not acknowledge in time."""
    level: EscalationLevel
    to_person: UserOut | None
    """Whom it went to (None: nobody of that role exists; the command room saw it)."""
    incident_id: int | None
    due_at: datetime
    fired_at: datetime
    package: EscalationPackage | None = Field(
        None, description="What it carried: the directive, the target, the incident's summary."
    )

    _package = field_validator("package", mode="before")(_parsed)


class EscalateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: EscalationTarget = Field(description="The leader on duty, or the upper court's command center.")
    reason: str = Field(min_length=1, max_length=2000, description="Why, in a few words.")
    observer_id: Id | None = Field(
        None,
        description="With target upper_court: only this upper-court observer. Unset: all of them.",
    )


class RecipientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person: UserOut
    acknowledged_at: datetime | None = Field(description="When they acknowledged receiving it.")


class IncidentEscalationOut(BaseModel):
    """An incident reported up, with the package as it was sent."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    incident_id: int
    target: EscalationTarget
    reason: str
    requested_by: UserOut
    requested_at: datetime
    recipients: list[RecipientOut]
    package: EscalationPackage
    package_sha256: str = Field(description="SHA-256 of the package as stored (canonical JSON).")

    _package = field_validator("package", mode="before")(_parsed)


class IncidentEscalationPage(Page[IncidentEscalationOut]): ...
