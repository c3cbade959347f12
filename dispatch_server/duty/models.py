"""Duty (R10, 值班制度): the roster, sign-in and sign-out, handovers with their open items, and the
duty log. Posts are named by the keys of the ``duty.posts`` setting (see :mod:`zhihui.settings`)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dispatch_server.db import Base, UtcDateTime
from dispatch_server.people.models import Person

POST_LENGTH = 48


class Shift(Base):
    """One person rostered on one post from ``starts_at`` to ``ends_at`` (UTC, end exclusive).
    Shifts of one person on one post never overlap."""

    __tablename__ = "duty_shift"
    __table_args__ = (
        Index("ix_duty_shift_post_starts_at", "post", "starts_at"),
        Index("ix_duty_shift_person_id_starts_at", "person_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    post: Mapped[str] = mapped_column(String(POST_LENGTH))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    person: Mapped[Person] = relationship(foreign_keys=[person_id], lazy="joined")


class SignIn(Base):
    """A person signed in on a post (值班签到), and when they signed out. At most one open (not
    signed out) sign-in per person and post: a partial unique index, which makes signing in
    idempotent even between processes."""

    __tablename__ = "duty_sign_in"
    __table_args__ = (
        Index(
            "ux_duty_sign_in_open",
            "person_id",
            "post",
            unique=True,
            sqlite_where=text("signed_out_at IS NULL"),
            postgresql_where=text("signed_out_at IS NULL"),
        ),
        Index("ix_duty_sign_in_post_signed_in_at", "post", "signed_in_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    post: Mapped[str] = mapped_column(String(POST_LENGTH))
    shift_id: Mapped[int | None] = mapped_column(
        ForeignKey("duty_shift.id", ondelete="SET NULL"), default=None
    )
    """The shift it counts for; None: signed in without a shift (kept, and marked)."""
    signed_in_at: Mapped[datetime] = mapped_column(UtcDateTime)
    late_seconds: Mapped[int] = mapped_column(default=0)
    """How long after the shift's start the person signed in (0 when on time or without a shift)."""
    late: Mapped[bool] = mapped_column(default=False)
    """Later than ``duty.late_after_seconds`` after the shift's start."""
    signed_out_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    left_early: Mapped[bool] = mapped_column(default=False)
    """Signed out before the shift's end."""

    person: Mapped[Person] = relationship(lazy="joined")
    shift: Mapped[Shift | None] = relationship(lazy="joined")

    @property
    def unscheduled(self) -> bool:
        return self.shift_id is None


class Handover(Base):
    """A handover (交接班) on a post: the outgoing person's notes and the open items at that moment,
    accepted by the incoming person."""

    __tablename__ = "duty_handover"
    __table_args__ = (Index("ix_duty_handover_post_written_at", "post", "written_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    post: Mapped[str] = mapped_column(String(POST_LENGTH))
    from_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    to_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    """Who is to take over; None: anyone else on duty may accept it."""
    notes: Mapped[str] = mapped_column(Text, default="")
    written_at: Mapped[datetime] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    accepted_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)

    from_person: Mapped[Person] = relationship(foreign_keys=[from_person_id], lazy="joined")
    to_person: Mapped[Person | None] = relationship(foreign_keys=[to_person_id], lazy="joined")
    accepted_by: Mapped[Person | None] = relationship(foreign_keys=[accepted_by_id], lazy="joined")
    entries: Mapped[list[HandoverItem]] = relationship(lazy="selectin", order_by="HandoverItem.item_id")

    @property
    def items(self) -> list[OpenItem]:
        return [entry.item for entry in self.entries]


class OpenItem(Base):
    """Something still to be done on a post, handed from shift to shift until it is closed."""

    __tablename__ = "duty_open_item"
    __table_args__ = (Index("ix_duty_open_item_post_closed_at", "post", "closed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    post: Mapped[str] = mapped_column(String(POST_LENGTH))
    text: Mapped[str] = mapped_column(Text)
    directive_id: Mapped[int | None] = mapped_column(ForeignKey("directive.id"), default=None)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incident.id"), default=None)
    alert_id: Mapped[int | None] = mapped_column(default=None)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"), default=None)
    closed_note: Mapped[str] = mapped_column(Text, default="")

    created_by: Mapped[Person] = relationship(foreign_keys=[created_by_id], lazy="joined")
    closed_by: Mapped[Person | None] = relationship(foreign_keys=[closed_by_id], lazy="joined")


class HandoverItem(Base):
    """An open item as one handover passed it on."""

    __tablename__ = "duty_handover_item"

    handover_id: Mapped[int] = mapped_column(
        ForeignKey("duty_handover.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("duty_open_item.id"), primary_key=True, index=True)

    item: Mapped[OpenItem] = relationship(lazy="joined")


class LogKind(enum.StrEnum):
    """What a duty log entry records."""

    CALL = "call"
    """A telephone call taken or made."""
    VISIT = "visit"
    """Someone came to the center."""
    EVENT = "event"
    """Something that happened."""
    NOTE = "note"


class LogEntry(Base):
    """One entry of the duty log (值班记录). Entries are never changed or removed (the database
    refuses it, as for the audit log): a mistake is corrected by a new entry naming the one it
    corrects, and each entry is corrected at most once, so corrections form a chain."""

    __tablename__ = "duty_log_entry"
    __table_args__ = (Index("ix_duty_log_entry_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    author_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    post: Mapped[str | None] = mapped_column(String(POST_LENGTH), default=None)
    """The post the author was signed in on when writing it, if any."""
    kind: Mapped[LogKind] = mapped_column(Enum(LogKind, native_enum=False, length=16))
    text: Mapped[str] = mapped_column(Text)
    corrects_id: Mapped[int | None] = mapped_column(
        ForeignKey("duty_log_entry.id"), default=None, unique=True
    )
    """The entry this one corrects; unique: an entry has at most one correction."""

    author: Mapped[Person] = relationship(lazy="joined")


# The application never updates or deletes a log entry; the database refuses it too, with triggers
# made by the migrations (dispatch_server/migrations/versions/0001_baseline.py).
