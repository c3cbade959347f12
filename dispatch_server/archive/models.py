from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime, utcnow
from dispatch_server.incidents import models as _incidents  # noqa: F401 (the incident table, for holds)
from dispatch_server.people.models import Person


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


class RecordingHold(Base):
    """An evidence hold (R2): a stream's recording, or every recording of an incident, kept whatever
    the retention says until the hold is lifted. A lifted hold stays, with who lifted it and why."""

    __tablename__ = "recording_hold"
    __table_args__ = (
        CheckConstraint("(stream_id IS NULL) <> (incident_id IS NULL)", name="ck_recording_hold_one_object"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[str | None] = mapped_column(ForeignKey("stream.id"), index=True, default=None)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"), index=True, default=None)
    reason: Mapped[str] = mapped_column(Text)
    placed_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lifted_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    lifted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    lift_reason: Mapped[str | None] = mapped_column(Text, default=None)

    placed_by: Mapped[Person] = relationship(foreign_keys=[placed_by_id], lazy="joined")
    lifted_by: Mapped[Person | None] = relationship(foreign_keys=[lifted_by_id], lazy="joined")

    @property
    def active(self) -> bool:
        return self.lifted_at is None


class RecordingDeletion(Base):
    """A lawful deletion (R2): a stream's segments removed once their retention was over and no hold
    applied. The stream's manifest holds the same as a tombstone line (``entry_hash``), so that
    ``zhihui verify`` explains the missing files instead of reporting them."""

    __tablename__ = "recording_deletion"

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(ForeignKey("stream.id"), index=True)
    deleted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """None when done from the command line (the operator is in ``deleted_by``)."""
    deleted_by: Mapped[str] = mapped_column(String(96))
    reason: Mapped[str] = mapped_column(Text)
    retention_days: Mapped[int] = mapped_column(Integer)
    kept_until: Mapped[datetime] = mapped_column(UtcDateTime)
    """When the retention of the newest segment ran out."""
    segments: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    """Hash of the tombstone line in the manifest."""
    line: Mapped[str] = mapped_column(Text)
    """The tombstone line itself, recorded before it is appended, so that an interrupted deletion
    can be finished exactly as it was begun."""
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    """When the tombstone was in the manifest and the files gone; None while under way."""


class DeletedSegment(Base):
    """A catalogued segment whose file a :class:`RecordingDeletion` removed. A table of its own, so
    that databases made before deletions existed simply gain it."""

    __tablename__ = "recording_segment_deleted"

    segment_id: Mapped[int] = mapped_column(ForeignKey("recording_segment.id"), primary_key=True)
    deletion_id: Mapped[int] = mapped_column(ForeignKey("recording_deletion.id"), index=True)


class RedactionState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Redaction(Base):
    """A derived copy of a stream's recording (or a time range of it) with faces blurred. It is not
    evidence: the evidence is the segments it names, which it never changes."""

    __tablename__ = "recording_redaction"

    id: Mapped[int] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(ForeignKey("stream.id"), index=True)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """None when made from the command line."""
    requested_by_name: Mapped[str] = mapped_column(String(128))
    """Who asked: display name, username and role, or ``cli:<user>``."""
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    since: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    until: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    state: Mapped[RedactionState] = mapped_column(String(16), default=RedactionState.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    """0..1."""
    error: Mapped[str | None] = mapped_column(Text, default=None)
    file: Mapped[str | None] = mapped_column(String(1024), default=None)
    """The copy, once done: a name in the server's redactions folder, or an absolute path when
    written by ``zhihui redact``. Its sidecar JSON is beside it (``<file>.json``)."""
    bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    """The copy's SHA-256."""
    frames: Mapped[int | None] = mapped_column(Integer, default=None)
    frames_with_faces: Mapped[int | None] = mapped_column(Integer, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    sources: Mapped[list[RedactionSource]] = relationship(
        lazy="selectin", order_by="RedactionSource.sequence", cascade="all, delete-orphan"
    )


class RedactionSource(Base):
    """One segment a redacted copy was made from, with the hash it had (its manifest entry's)."""

    __tablename__ = "recording_redaction_source"

    id: Mapped[int] = mapped_column(primary_key=True)
    redaction_id: Mapped[int] = mapped_column(ForeignKey("recording_redaction.id"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(String(512))
    """Relative to the recordings root, as the catalog has it."""
    sha256: Mapped[str] = mapped_column(String(64), index=True)
