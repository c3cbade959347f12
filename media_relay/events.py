"""What the relay tells the dispatch server: streams coming up and going down."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

__all__ = ["EventSink", "RelayEvent", "StreamDown", "StreamUp"]


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


RelayEvent = Annotated[StreamUp | StreamDown, Field(discriminator="type")]

EventSink = Callable[[StreamUp | StreamDown], Awaitable[None]]
