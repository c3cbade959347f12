from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime
from dispatch_server.people.models import Person


class Stream(Base):
    """A live stream as the relay reported it (R1): who, when, which codecs."""

    __tablename__ = "stream"

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    device: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    end_reason: Mapped[str | None] = mapped_column(String(128), default=None)
    video_codec: Mapped[str | None] = mapped_column(String(16), default=None)
    audio_codec: Mapped[str | None] = mapped_column(String(16), default=None)

    officer: Mapped[Person] = relationship(lazy="joined")
    health_record: Mapped[StreamHealthRecord | None] = relationship(lazy="joined")

    @property
    def live(self) -> bool:
        return self.started_at is not None and self.ended_at is None

    @property
    def health(self) -> list[str]:
        """The relay's current video health flags (R8); empty when the picture is fine."""
        record = self.health_record
        return record.flags.split(",") if record is not None and record.flags else []


class StreamHealthRecord(Base):
    """The latest video health the relay reported for a stream (R8): frozen, black, covered,
    no_video. A table of its own, so that databases made before it simply gain it."""

    __tablename__ = "stream_health"

    stream_id: Mapped[str] = mapped_column(ForeignKey("stream.id", ondelete="CASCADE"), primary_key=True)
    flags: Mapped[str] = mapped_column(String(128), default="")
    """Comma-separated flags; empty when healthy."""
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
