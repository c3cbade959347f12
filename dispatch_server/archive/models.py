from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispatch_server.db import Base, UtcDateTime, utcnow


class RecordingSegment(Base):
    """One sealed segment of a stream's recording, as its manifest entry says (R2)."""

    __tablename__ = "recording_segment"
    __table_args__ = (
        UniqueConstraint("stream_id", "sequence", name="uq_recording_segment_sequence"),
        Index("ix_recording_segment_times", "started_at", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(ForeignKey("stream.id"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(String(512))
    """Path relative to the recordings root, ``/``-separated."""
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    media_start: Mapped[float] = mapped_column(Float)
    media_end: Mapped[float] = mapped_column(Float)
    video_frames: Mapped[int] = mapped_column(Integer, default=0)
    audio_frames: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)
    entry_hash: Mapped[str] = mapped_column(String(64))
    """Hash of the segment's manifest line: the chain head as the catalog saw it."""
    cataloged_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RecordingGap(Base):
    """A stretch with nothing recorded, with its reason (R2: a gap is never hidden)."""

    __tablename__ = "recording_gap"
    __table_args__ = (UniqueConstraint("stream_id", "entry_hash", name="uq_recording_gap_entry"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(ForeignKey("stream.id"), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(128))
    entry_hash: Mapped[str] = mapped_column(String(64))
    cataloged_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Export(Base):
    """An evidence package being built or built (issue 4): what was asked, by whom, how far along."""

    __tablename__ = "recording_export"

    id: Mapped[int] = mapped_column(primary_key=True)
    requested_by: Mapped[int] = mapped_column(ForeignKey("person.id"))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    query: Mapped[str] = mapped_column(Text)
    """The selection as canonical JSON: stream ids, or a time range and officers."""
    state: Mapped[str] = mapped_column(String(16), default="queued")
    """queued, running, done, failed."""
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    """0..1."""
    error: Mapped[str | None] = mapped_column(Text, default=None)
    file: Mapped[str | None] = mapped_column(String(512), default=None)
    """The zip, relative to the exports folder, once done."""
    bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
