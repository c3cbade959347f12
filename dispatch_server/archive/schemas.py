from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from dispatch_server.ids import Id
from dispatch_server.people.schemas import UserOut


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sequence: int
    started_at: datetime
    ended_at: datetime
    media_start: float
    media_end: float
    video_frames: int
    audio_frames: int
    bytes: int
    sha256: str
    recovered: bool


class GapOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    started_at: datetime | None
    ended_at: datetime
    reason: str


class RecordingOut(BaseModel):
    stream_id: str
    officer: UserOut
    device: str
    video_codec: str | None
    audio_codec: str | None
    live: bool = Field(description="Still streaming: more segments will come.")
    container: str = Field(description="What playback serves: webm (VP8/Opus) or mp4 (H.264).")
    started_at: datetime | None = Field(description="The first listed segment's start.")
    ended_at: datetime | None = Field(description="The last listed segment's end.")
    bytes: int
    segments: list[SegmentOut]
    gaps: list[GapOut]


class TicketOut(BaseModel):
    ticket: str
    expires_at: datetime
    url: str = Field(description="Where to use it: the play or download URL with the ticket in it.")


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    stream_ids: list[str] = Field(default_factory=list, max_length=64)
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    officer_ids: list[Id] = Field(default_factory=list, max_length=64)


class ExportOut(BaseModel):
    id: int
    state: str = Field(description="queued, running, done or failed")
    progress: float = Field(description="0 to 1")
    percent: int
    requested_at: datetime
    finished_at: datetime | None
    error: str | None
    bytes: int | None
    sha256: str | None = Field(description="The zip's SHA-256, once done.")
    selection: str


class VerifyProblemOut(BaseModel):
    kind: str
    line: int | None
    file: str | None
    expected: str
    found: str
    note: str


class VerifyOut(BaseModel):
    stream_id: str
    ok: bool
    segments: int
    gaps: int
    deleted: int = Field(description="Segments lawfully deleted (retention over, no hold): not problems.")
    head: str
    catalog_head: str | None = Field(
        description="The hash of the latest manifest line the catalog knows: the head, when all is well."
    )
    problems: list[VerifyProblemOut]


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream_id: str | None = Field(None, max_length=96, description="Hold this stream's recording, or")
    incident_id: Id | None = Field(None, description="every recording of this incident (name one).")
    reason: str = Field("", max_length=2000, description="Why (3 characters at least): the case, the order.")


class LiftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        "", max_length=2000, description="Why the hold is no longer needed (3 characters at least)."
    )


class HoldOut(BaseModel):
    id: int
    stream_id: str | None
    incident_id: int | None
    reason: str
    placed_by: UserOut
    placed_at: datetime
    active: bool
    lifted_by: UserOut | None
    lifted_at: datetime | None
    lift_reason: str | None


class RetentionOut(BaseModel):
    stream_id: str
    retention_days: int
    ended_at: datetime = Field(description="When the recording's last segment ended.")
    kept_until: datetime = Field(description="The retention runs out then (holds keep it longer).")
    holds: list[HoldOut] = Field(description="The active holds that keep it: on the stream or its incidents.")
    deletable: bool = Field(description="A deletion asked for now would be allowed.")
    refusal: str | None = Field(description="Why a deletion now would be refused.")
    deleted_at: datetime | None


class DeleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000, description="Why it is deleted now (3 characters at least).")


class DeletionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    stream_id: str
    deleted_at: datetime
    deleted_by: str
    reason: str
    retention_days: int
    kept_until: datetime
    segments: int
    bytes: int
    entry_hash: str = Field(description="The hash of the tombstone line appended to the manifest.")
