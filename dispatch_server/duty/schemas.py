from __future__ import annotations

import enum
from datetime import date, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from dispatch_server.duty.models import LogKind
from dispatch_server.ids import Id
from dispatch_server.paging import Page
from dispatch_server.people.schemas import UserOut

POST_KEY = r"^[a-z0-9][a-z0-9-]{0,47}$"


class DutyChange(enum.StrEnum):
    """What a ``duty`` event reports; its ``ref_id`` is the id of the thing named."""

    SHIFT_CREATED = "shift_created"
    SHIFT_CHANGED = "shift_changed"
    SHIFT_DELETED = "shift_deleted"
    SIGNED_IN = "signed_in"
    SIGNED_OUT = "signed_out"
    HANDOVER_WRITTEN = "handover_written"
    HANDOVER_ACCEPTED = "handover_accepted"
    ITEM_CLOSED = "item_closed"
    LOG_ENTRY = "log_entry"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostOut(BaseModel):
    key: str
    name: str
    required: bool = Field(description="Must be manned during working hours (an empty seat raises an alert).")
    roles: list[str] = Field(description="Roles that may hold it; empty: any duty role.")


# -- roster ----------------------------------------------------------------------------------------


class ShiftIn(_In):
    person_id: Id
    post: str = Field(pattern=POST_KEY, description="A post key from GET /api/duty/posts.")
    starts_at: AwareDatetime = Field(description="ISO 8601 with a zone (stored in UTC).")
    ends_at: AwareDatetime
    note: str = Field("", max_length=200)


class ShiftPatch(_In):
    """Fields to change; those left out stay as they are. Only shifts that have not started."""

    person_id: Id | None = None
    post: str | None = Field(None, pattern=POST_KEY)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    note: str | None = Field(None, max_length=200)


class ShiftOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    person: UserOut
    post: str
    starts_at: datetime
    ends_at: datetime
    note: str
    created_by_id: int
    created_at: datetime


class ShiftPage(Page[ShiftOut]):
    """Shifts of the roster."""


# -- sign-in ---------------------------------------------------------------------------------------


class SignInIn(_In):
    post: str | None = Field(
        None, pattern=POST_KEY, description="Unset: the post of the caller's current (or coming) shift."
    )


class SignInOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    person: UserOut
    post: str
    shift_id: int | None
    unscheduled: bool = Field(description="Signed in without a shift on this post.")
    signed_in_at: datetime
    late: bool
    late_seconds: int = Field(description="Seconds after the shift's start (0 when on time or unscheduled).")
    signed_out_at: datetime | None
    left_early: bool


# -- handover --------------------------------------------------------------------------------------


class ItemIn(_In):
    text: str = Field(min_length=1, max_length=2000)
    directive_id: Id | None = None
    incident_id: Id | None = None
    alert_id: Id | None = None


class HandoverIn(_In):
    post: str = Field(pattern=POST_KEY)
    notes: str = Field(min_length=1, max_length=8000)
    to_person_id: Id | None = Field(
        None, description="Who takes over. Unset: the next person rostered on the post, else anyone."
    )
    items: list[ItemIn] = Field(default_factory=list, max_length=100, description="New open items.")
    close_item_ids: list[Id] = Field(
        default_factory=list, max_length=100, description="Open items of the post done before handing over."
    )


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    post: str
    text: str
    directive_id: int | None
    incident_id: int | None
    alert_id: int | None
    created_by: UserOut
    created_at: datetime
    closed_at: datetime | None
    closed_by: UserOut | None
    closed_note: str


class CloseIn(_In):
    note: str = Field("", max_length=2000)


class HandoverOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    post: str
    from_person: UserOut
    to_person: UserOut | None
    notes: str
    written_at: datetime
    accepted_at: datetime | None
    accepted_by: UserOut | None
    items: list[ItemOut] = Field(description="The open items it handed over (as they stand now).")


# -- log -------------------------------------------------------------------------------------------


class LogEntryIn(_In):
    kind: LogKind
    text: str = Field(min_length=1, max_length=8000)
    corrects_id: Id | None = Field(None, description="The entry this one corrects (the newest of its chain).")


class LogEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    author: UserOut
    post: str | None
    kind: LogKind
    text: str
    corrects_id: int | None
    corrected_by_id: int | None = Field(None, description="The entry that corrects this one, if any.")


class LogPage(Page[LogEntryOut]):
    """Entries of the duty log, in time order."""


# -- the board -------------------------------------------------------------------------------------


class PeriodOut(BaseModel):
    starts_at: datetime
    ends_at: datetime


class PostBoard(PostOut):
    shifts: list[ShiftOut] = Field(description="The day's shifts on this post.")
    signed_in: list[SignInOut] = Field(description="Who is signed in on it now.")
    holder: UserOut | None = Field(description="Who holds it now: signed in, else rostered.")


class BoardOut(BaseModel):
    """A day of duty at a glance: for the duty page."""

    day: date
    time_zone: str
    now: datetime
    working_now: bool
    periods: list[PeriodOut] = Field(description="The day's working hours (none on a day off).")
    posts: list[PostBoard]
