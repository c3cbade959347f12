"""The catalog of redacted copies (issue 4): each names the segments it was derived from, by hash."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime, utcnow

__all__ = ["Redaction", "RedactionSource", "RedactionState"]


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
