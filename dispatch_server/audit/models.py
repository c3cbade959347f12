from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch_server.db import Base, UtcDateTime

# BIGINT on PostgreSQL; INTEGER (the 64-bit rowid) on SQLite.
AuditId = BigInteger().with_variant(Integer(), "sqlite")


class AuditAction(enum.StrEnum):
    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    REFRESH_REUSE = "auth.refresh_reuse"
    """A spent refresh token was shown again: its whole sign-in was revoked."""
    PERSON_CREATE = "people.create"
    PERSON_UPDATE = "people.update"
    UNIT_CREATE = "units.create"
    UNIT_UPDATE = "units.update"
    UNIT_DELETE = "units.delete"
    DEVICE_CREATE = "devices.create"
    DEVICE_UPDATE = "devices.update"
    DEVICE_DELETE = "devices.delete"
    ARCHIVE_SEARCH = "archive.search"
    ARCHIVE_PLAY = "archive.play"
    ARCHIVE_EXPORT = "archive.export"
    ARCHIVE_EXPORT_DOWNLOAD = "archive.export_download"
    ARCHIVE_REDACT = "archive.redact"
    ARCHIVE_REDACTION_DOWNLOAD = "archive.redaction_download"
    ARCHIVE_VERIFY = "archive.verify"
    ARCHIVE_DELETE = "archive.delete"
    ARCHIVE_HOLD = "archive.hold"
    ARCHIVE_HOLD_LIFT = "archive.hold_lift"
    ARCHIVE_RETENTION = "archive.retention"
    """Reading a recording's retention and holds, or the list of holds."""
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    DUTY_SHIFT_CREATE = "duty.shift_create"
    DUTY_SHIFT_CHANGE = "duty.shift_change"
    DUTY_SHIFT_DELETE = "duty.shift_delete"
    DUTY_SIGN_IN = "duty.sign_in"
    DUTY_SIGN_OUT = "duty.sign_out"
    DUTY_HANDOVER = "duty.handover"
    DUTY_HANDOVER_ACCEPT = "duty.handover_accept"
    DUTY_ITEM_CLOSE = "duty.item_close"
    DUTY_LOG = "duty.log"
    ALERT_SOS = "alert.sos"
    ALERT_ACKNOWLEDGE = "alert.acknowledge"
    ALERT_RESOLVE = "alert.resolve"
    FIELD_OP_CREATE = "field_op.create"
    FIELD_OP_START = "field_op.start"
    FIELD_OP_END = "field_op.end"
    INCIDENT_OPEN = "incident.open"
    INCIDENT_UPDATE = "incident.update"
    """Its kind, title, case number, place or commander changed."""
    INCIDENT_CLOSE = "incident.close"
    INCIDENT_REOPEN = "incident.reopen"
    INCIDENT_ASSIGN = "incident.assign"
    """Officers put on an incident."""
    INCIDENT_UNASSIGN = "incident.unassign"
    INCIDENT_SHARE = "incident.share"
    """An incident shared with upper-court observers."""
    INCIDENT_UNSHARE = "incident.unshare"
    INCIDENT_NOTE = "incident.note"
    INCIDENT_ESCALATE = "incident.escalate"
    """An incident reported up (R6), with the SHA-256 of the package sent."""
    INCIDENT_ESCALATION_ACK = "incident.escalation_ack"
    """A recipient acknowledged receiving an incident's escalation."""
    INCIDENT_VIEW_GRANT = "incident.view_grant"
    """A grant to watch an incident's streams (an upper-court observer's too)."""
    DIRECTIVE_ISSUE = "directive.issue"
    DIRECTIVE_ACKNOWLEDGE = "directive.acknowledge"
    """A target acknowledged a directive (by REST or over its websocket); a repeat is not audited."""
    DIRECTIVE_DONE = "directive.done"
    STREAM_PUBLISH_GRANT = "stream.publish_grant"
    """A field officer was given a grant to publish a new stream."""
    STREAM_VIEW_GRANT = "stream.view_grant"
    """A grant to watch live streams named by id (see INCIDENT_VIEW_GRANT for an incident's)."""
    POSITION_REPORT = "positions.report"
    """Positions entered for someone else (radioed in); an officer's own reports are not audited."""
    POSITION_TRACK = "positions.track"
    """Reading where a person has been."""


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    """Tried and allowed, but it did not work (a wrong password, an unknown stream, an error)."""
    DENIED = "denied"
    """The person may not do this."""


class AuditEvent(Base):
    """One attempt to see, export, check or change something (R17). Rows are only ever inserted:
    each holds the hash of the row before it and its own, over a canonical JSON of its fields
    (see :func:`dispatch_server.audit.service.row_hash`), so an edited, removed or inserted row
    breaks the chain."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_action_id", "action", "id"),
        Index("ix_audit_event_actor_id", "actor_id", "id"),
    )

    id: Mapped[int] = mapped_column(AuditId, primary_key=True, autoincrement=False)
    """Given out by :class:`AuditHead`: consecutive, in chain order."""
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor_id: Mapped[int | None] = mapped_column(default=None)
    """The person's id; none for a failed sign-in (the username tried is in ``detail``)."""
    actor_name: Mapped[str] = mapped_column(String(64), default="")
    role: Mapped[str] = mapped_column(String(32), default="")
    source: Mapped[str] = mapped_column(String(64), default="")
    """The client's address as the server saw it."""
    action: Mapped[str] = mapped_column(String(48))
    object: Mapped[str] = mapped_column(String(256), default="")
    """What it concerned: ``stream:<id>``, ``export:<id>``, ``recordings``, ..."""
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="{}")
    """Canonical JSON: filters used, counts, reasons."""
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last audit id given out and its hash. Taking an id with an UPDATE of this row
    locks it until the transaction ends (PostgreSQL: the row; SQLite: the database), so writers
    append one after another and the chain stays linear."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(AuditId)
    last_hash: Mapped[str] = mapped_column(String(64))


# The application never updates or deletes an audit row; the database refuses it too, with triggers
# made by the migrations (dispatch_server/migrations/versions/0001_baseline.py, 0002: TRUNCATE).
