from __future__ import annotations

from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from dispatch_server.people.schemas import UserOut


class StreamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    # "id" on the ORM row, "stream_id" when read back from JSON (the event log).
    stream_id: str = Field(validation_alias=AliasChoices("id", "stream_id"))
    officer: UserOut
    device: str
    started_at: datetime | None
    ended_at: datetime | None
    video_codec: str | None
    audio_codec: str | None
    health: list[str] = Field(default_factory=list, description="Video health flags (R8); empty: fine.")
    whep_url: str = ""


class PublishGrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field("phone", pattern=r"^[a-z0-9_-]{1,32}$", description="bodycam, phone, ...")


class PublishGrantOut(BaseModel):
    grant: str
    stream_id: str
    whip_url: str
    expires_at: datetime
    ice_servers: list[dict[str, object]]


class ViewGrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream_ids: list[str] = Field(min_length=1, max_length=64)


class IncidentViewGrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stream_ids: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Streams of the incident's officers to watch. Empty: all of their live ones.",
    )


class ViewableStream(BaseModel):
    stream_id: str
    whep_url: str


class ViewGrantOut(BaseModel):
    grant: str
    expires_at: datetime
    streams: list[ViewableStream]
