"""What the relay tells the dispatch server: streams coming up and going down, segments sealed, gaps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

__all__ = [
    "AnyRelayEvent",
    "EventSink",
    "RecordingGap",
    "RelayEvent",
    "RelayReport",
    "RelayStarted",
    "SegmentSealed",
    "StorageAlert",
    "StreamDown",
    "StreamHealth",
    "StreamUp",
]


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
"""Bounds of the catalog's INTEGER and BIGINT columns: a report out of them is refused where it
arrives (a 422 from ``POST /api/relay/events``), not by the database driver."""
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=0, le=INT64_MAX)]


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


class SegmentSealed(BaseModel):
    """A segment was sealed and chained into its stream's manifest (R2): the catalog's row."""

    type: Literal["segment_sealed"] = "segment_sealed"
    stream_id: str
    officer_id: str
    """The publisher's person id; empty for a segment sealed after a crash (the relay no longer
    knows who published it; the dispatch server does)."""
    file: str
    """The segment's path relative to the recordings root, with ``/`` separators."""
    sequence: Int32
    started_at: datetime
    ended_at: datetime
    media_start: float
    """Seconds on the recorder's media clock (RTP time)."""
    media_end: float
    frames: dict[str, Int32]
    """Frames per kind: ``video``, ``audio``."""
    bytes: Int64
    sha256: str
    recovered: bool = False
    """Sealed when the relay started again after a crash."""
    entry_hash: str
    """SHA-256 of the segment's manifest line: the stream's chain head once it is written."""


class RecordingGap(BaseModel):
    """A stretch of a stream with nothing recorded (publisher dropped, relay restart), as the
    manifest records it (R2: never hidden)."""

    type: Literal["recording_gap"] = "recording_gap"
    stream_id: str
    officer_id: str
    started_at: datetime | None
    ended_at: datetime
    reason: str
    entry_hash: str
    """SHA-256 of the gap's manifest line."""


class StorageAlert(BaseModel):
    """The archive's disk is nearly full, or a recording write failed (R2), or it is fine again."""

    type: Literal["storage_alert"] = "storage_alert"
    level: str
    """``low``, ``write_failed`` or ``ok``."""
    message: str
    at: datetime
    stream_id: str = ""
    """The stream whose write failed; empty for the disk as a whole."""
    free_bytes: Int64 | None = None
    total_bytes: Int64 | None = None


AnyRelayEvent = StreamUp | StreamDown | StreamHealth | SegmentSealed | RecordingGap | StorageAlert

RelayEvent = Annotated[AnyRelayEvent, Field(discriminator="type")]

EventSink = Callable[[AnyRelayEvent], Awaitable[None]]


class RelayStarted(BaseModel):
    """A relay run apart (``zhihui relay``) started, with no streams. Always its first report."""

    type: Literal["relay_started"] = "relay_started"
    at: datetime
    left_live: list[str] = Field(default_factory=list, max_length=10_000)
    """Streams of the node's previous run whose end the dispatch server may not have heard of (live
    at a crash, or with reports undelivered or dropped): those still live are ended, and the node
    reports their manifests again."""


class RelayReport(BaseModel):
    """One event as a relay run apart posts it to the dispatch server (``POST /api/relay/events``),
    one at a time, in the order they happened."""

    node: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="The relay node's name.")
    event: Annotated[AnyRelayEvent | RelayStarted, Field(discriminator="type")]
