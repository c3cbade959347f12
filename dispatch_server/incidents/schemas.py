from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dispatch_server.ids import Id
from dispatch_server.incidents.models import IncidentKind, IncidentStatus, TimelineKind
from dispatch_server.paging import Page
from dispatch_server.people.schemas import UserOut


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: IncidentKind
    title: str = Field(min_length=1, max_length=200)
    case_number: str = Field("", max_length=64, description="The court's case number, if any yet.")
    place: str = Field("", max_length=200)
    commander_id: Id | None = Field(
        None, description="Who runs it (a commander or leader). Unset: whoever opens it, if they may."
    )
    officer_ids: list[Id] = Field(default_factory=list, max_length=500, description="Officers on it.")


class IncidentPatch(BaseModel):
    """Fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    kind: IncidentKind | None = None
    title: str | None = Field(None, min_length=1, max_length=200)
    case_number: str | None = Field(None, max_length=64)
    place: str | None = Field(None, max_length=200)
    commander_id: Id | None = None
    status: IncidentStatus | None = None


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: IncidentKind
    title: str
    case_number: str
    place: str
    status: IncidentStatus
    commander: UserOut | None
    opened_by: UserOut
    opened_at: datetime
    closed_at: datetime | None
    officers: list[UserOut]


class IncidentPage(Page[IncidentOut]): ...


class PeopleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_ids: list[Id] = Field(min_length=1, max_length=500)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


class TimelineEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    kind: TimelineKind
    summary: str
    actor: UserOut | None
    person: UserOut | None
    directive_id: int | None
    escalation_id: int | None
    stream_id: str | None
    subject: str | None = Field(None, description="What else it is about: alert:12, field_op:3, hold:5, ...")


class TimelinePage(BaseModel):
    items: list[TimelineEntryOut]
    next_after: int | None = Field(
        description="Pass as ``after`` for the next page; None when this page is the last."
    )
