from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

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
    officer_ids: list[int] = Field(default_factory=list, max_length=64)


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
    head: str
    catalog_head: str | None = Field(description="The last catalogued entry's hash: should be in the chain.")
    problems: list[VerifyProblemOut]
