"""What the relay tells the dispatch server: streams coming up and going down."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

__all__ = ["EventSink", "RelayEvent", "StreamDown", "StreamHealth", "StreamUp"]


class StreamUp(BaseModel):
    type: Literal["stream_up"] = "stream_up"
    stream_id: str
    officer_id: str
    started_at: datetime
    video_codec: str | None
    audio_codec: str | None


class StreamDown(BaseModel):
    type: Literal["stream_down"] = "stream_down"
    stream_id: str
    officer_id: str
    ended_at: datetime
    reason: str


class StreamHealth(BaseModel):
    """The picture's health changed (R8): an empty ``flags`` means healthy again."""

    type: Literal["stream_health"] = "stream_health"
    stream_id: str
    officer_id: str
    at: datetime
    flags: list[str]


RelayEvent = Annotated[StreamUp | StreamDown | StreamHealth, Field(discriminator="type")]

EventSink = Callable[[StreamUp | StreamDown | StreamHealth], Awaitable[None]]
