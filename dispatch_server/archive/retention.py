"""Retention and evidence holds (R2): how long a recording is kept, what keeps it, and its deletion.

A recording is kept at least ``recording.retention_days`` (never fewer than six months) after its
last segment ends, and for as long as an evidence hold applies to it: a hold on the stream, or on
an incident whose timeline names the stream. Nothing is deleted on its own: a deletion is asked
for, and refused (:class:`~dispatch_server.errors.Conflict`, with the reason) while the stream is
live, under a hold, inside its retention, or when it does not verify (deleting it would destroy
the evidence of what is wrong). An allowed deletion tombstones the segments in the manifest, then
removes the files (:func:`media_relay.recording.deletion.remove_segments`), then records the
deletion in the catalog. The callers audit every attempt with its outcome. A hold placed or lifted
is noted on the timelines of the incidents it keeps (R5).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.archive import service as catalog
from dispatch_server.archive import verification
from dispatch_server.archive.models import DeletedSegment, RecordingDeletion, RecordingHold, RecordingSegment
from dispatch_server.errors import Conflict, Invalid, NotFound
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import Incident, TimelineKind
from dispatch_server.people.models import Person
from dispatch_server.streams.models import Stream
from media_relay.recording.deletion import TombstoneRefused, apply_tombstone, prepare_tombstone
from media_relay.recording.recorder import MANIFEST_NAME

__all__ = [
    "RETENTION_BASIS",
    "RetentionStatus",
    "delete_recording",
    "deletion_detail",
    "holds_on",
    "kept_until",
    "lift_hold",
    "list_holds",
    "place_hold",
    "refusal",
    "retention_of",
]

RETENTION_BASIS = "retention"
"""What a deletion rests on, as its tombstone says: the retention ran out, and no hold applied."""


def kept_until(ended_at: datetime, retention_days: int) -> datetime:
    """The first moment a recording that ended at ``ended_at`` may be deleted."""
    return ended_at + timedelta(days=retention_days)


@dataclass(slots=True)
class RetentionStatus:
    """Why one stream's recording is kept, or that it may go."""

    stream: Stream
    retention_days: int
    ended_at: datetime
    """When its last segment ended."""
    kept_until: datetime
    holds: list[RecordingHold] = field(default_factory=list)
    """The active holds that apply to it."""
    deleted: RecordingDeletion | None = None
    """The finished deletion that removed its segments, if one did."""


def refusal(status: RetentionStatus, now: datetime) -> str | None:
    """Why deleting the recording now must be refused; None when it may be deleted."""
    stream = status.stream
    if status.deleted is not None:
        return (
            f"the recording of stream {stream.id} was deleted on {status.deleted.deleted_at.isoformat()} "
            f"by {status.deleted.deleted_by}"
        )
    if stream.live:
        return f"stream {stream.id} is live: its recording is still being written"
    if status.holds:
        held = "; ".join(
            f"hold {hold.id} on {_hold_object(hold)} placed by {hold.placed_by.display_name} "
            f"({hold.placed_by.username}) on {hold.placed_at.isoformat()}: {hold.reason}"
            for hold in status.holds
        )
        return f"the recording of stream {stream.id} is under evidence hold: {held}"
    if now < status.kept_until:
        return (
            f"the recording of stream {stream.id} is inside its retention: it ended "
            f"{status.ended_at.isoformat()} and is kept until {status.kept_until.isoformat()} "
            f"({status.retention_days} days)"
        )
    return None


MIN_REASON = 3


def _check_reason(reason: str, what: str) -> None:
    if len(reason.strip()) < MIN_REASON:
        raise Invalid(f"{what} needs a reason ({MIN_REASON} characters at least)")


def _hold_object(hold: RecordingHold) -> str:
    return f"incident {hold.incident_id}" if hold.incident_id is not None else f"stream {hold.stream_id}"


# -- holds -------------------------------------------------------------------------------------------


async def _on_timelines(
    db_session: AsyncSession, hold: RecordingHold, person: Person, *, placed: bool, now: datetime
) -> None:
    """Note a hold placed or lifted on the timelines it concerns (R5): the incident held, or those
    that name the stream held. In the caller's transaction."""
    if hold.incident_id is not None:
        incident_ids = [hold.incident_id]
        what = "all of the incident's recordings"
    else:
        assert hold.stream_id is not None
        incident_ids = await catalog.incidents_of_stream(db_session=db_session, stream_id=hold.stream_id)
        what = f"the recording of stream {hold.stream_id}"
    verb = "placed an evidence hold on" if placed else "lifted the evidence hold on"
    reason = hold.reason if placed else hold.lift_reason
    for incident_id in incident_ids:
        incidents.add_entry(
            db_session,
            incident_id,
            TimelineKind.HOLD_PLACED if placed else TimelineKind.HOLD_LIFTED,
            f"{person.display_name} {verb} {what}: {reason}",
            at=now,
            actor_id=person.id,
            stream_id=hold.stream_id,
            subject=f"hold:{hold.id}",
        )


async def holds_on(*, db_session: AsyncSession, stream_id: str) -> list[RecordingHold]:
    """The active holds that keep this stream's recording: on the stream, or on its incidents."""
    incident_ids = await catalog.incidents_of_stream(db_session=db_session, stream_id=stream_id)
    query = select(RecordingHold).where(
        RecordingHold.lifted_at.is_(None),
        or_(RecordingHold.stream_id == stream_id, RecordingHold.incident_id.in_(incident_ids)),
    )
    return list((await db_session.scalars(query.order_by(RecordingHold.id))).unique().all())


async def list_holds(
    *,
    db_session: AsyncSession,
    active: bool | None = None,
    stream_id: str | None = None,
    incident_id: int | None = None,
) -> list[RecordingHold]:
    """Holds, newest first. ``stream_id`` gives those that apply to the stream (its incidents' too)."""
    query = select(RecordingHold).order_by(RecordingHold.id.desc()).limit(500)
    if active is not None:
        lifted = RecordingHold.lifted_at
        query = query.where(lifted.is_(None) if active else lifted.is_not(None))
    if stream_id is not None:
        incident_ids = await catalog.incidents_of_stream(db_session=db_session, stream_id=stream_id)
        query = query.where(
            or_(RecordingHold.stream_id == stream_id, RecordingHold.incident_id.in_(incident_ids))
        )
    if incident_id is not None:
        query = query.where(RecordingHold.incident_id == incident_id)
    return list((await db_session.scalars(query)).unique().all())


async def place_hold(
    *,
    db_session: AsyncSession,
    person: Person,
    reason: str,
    now: datetime,
    stream_id: str | None = None,
    incident_id: int | None = None,
) -> RecordingHold:
    """Hold a stream's recording, or every recording of an incident (those to come too)."""
    if (stream_id is None) == (incident_id is None):
        raise Invalid("name a stream or an incident to hold, not both")
    _check_reason(reason, "a hold")
    if stream_id is not None and await db_session.get(Stream, stream_id) is None:
        raise NotFound(f"there is no stream {stream_id!r}")
    if incident_id is not None and await db_session.get(Incident, incident_id) is None:
        raise NotFound(f"there is no incident {incident_id}")
    hold = RecordingHold(
        stream_id=stream_id,
        incident_id=incident_id,
        reason=reason.strip(),
        placed_by_id=person.id,
        placed_at=now,
    )
    db_session.add(hold)
    await db_session.flush()
    await _on_timelines(db_session, hold, person, placed=True, now=now)
    await db_session.refresh(hold)
    return hold


async def lift_hold(
    *, db_session: AsyncSession, hold_id: int, person: Person, reason: str, now: datetime
) -> RecordingHold:
    hold = await db_session.get(RecordingHold, hold_id)
    if hold is None:
        raise NotFound(f"there is no hold {hold_id}")
    _check_reason(reason, "lifting a hold")
    if hold.lifted_at is not None:
        assert hold.lifted_by is not None
        raise Conflict(
            f"hold {hold_id} was lifted on {hold.lifted_at.isoformat()} by {hold.lifted_by.username}"
        )
    hold.lifted_at = now
    hold.lifted_by_id = person.id
    hold.lift_reason = reason.strip()
    await db_session.flush()
    await _on_timelines(db_session, hold, person, placed=False, now=now)
    await db_session.refresh(hold)
    return hold


# -- retention and deletion --------------------------------------------------------------------------


async def retention_of(*, db_session: AsyncSession, stream_id: str, retention_days: int) -> RetentionStatus:
    """The stream's retention and holds; NotFound when nothing of it was ever catalogued."""
    stream = await db_session.get(Stream, stream_id)
    ended_at = await db_session.scalar(
        select(RecordingSegment.ended_at)
        .where(RecordingSegment.stream_id == stream_id)
        .order_by(RecordingSegment.ended_at.desc())
        .limit(1)
    )
    if stream is None or ended_at is None:
        raise NotFound(f"no recording of stream {stream_id!r}")
    deleted = await db_session.scalar(
        select(RecordingDeletion)
        .where(RecordingDeletion.stream_id == stream_id, RecordingDeletion.finished_at.is_not(None))
        .order_by(RecordingDeletion.id.desc())
        .limit(1)
    )
    return RetentionStatus(
        stream=stream,
        retention_days=retention_days,
        ended_at=ended_at,
        kept_until=kept_until(ended_at, retention_days),
        holds=await holds_on(db_session=db_session, stream_id=stream_id),
        deleted=deleted,
    )


async def delete_recording(
    *,
    db_session: AsyncSession,
    root: Path,
    stream_id: str,
    retention_days: int,
    now: datetime,
    reason: str,
    deleted_by: str,
    deleted_by_id: int | None,
) -> RecordingDeletion:
    """Delete a stream's recording if its retention is over, nothing holds it and it verifies (else
    Conflict, saying why). Three steps: the deletion and its tombstone line are committed to the
    catalog, the line is appended to the manifest and the files removed, the deletion is marked
    finished (flushed: the caller commits it with its audit event). A deletion interrupted after
    the first step is finished by asking again."""
    _check_reason(reason, "a deletion")
    status = await retention_of(db_session=db_session, stream_id=stream_id, retention_days=retention_days)
    deletion = await db_session.scalar(
        select(RecordingDeletion).where(
            RecordingDeletion.stream_id == stream_id, RecordingDeletion.finished_at.is_(None)
        )
    )
    directory = await verification.stream_folder(db_session=db_session, root=root, stream_id=stream_id)
    assert directory is not None  # retention_of found a segment
    if not (directory / MANIFEST_NAME).exists():
        raise Conflict(f"the manifest of stream {stream_id} is missing from {directory}: nothing was deleted")
    if deletion is None:
        deletion = await _begin(
            db_session, root, directory, status, now, reason.strip(), deleted_by, deleted_by_id
        )
    try:
        await asyncio.to_thread(apply_tombstone, directory, deletion.line.encode())
    except TombstoneRefused as error:
        await db_session.execute(delete(DeletedSegment).where(DeletedSegment.deletion_id == deletion.id))
        await db_session.delete(deletion)
        await db_session.commit()
        raise Conflict(f"{error}: nothing was deleted; ask again") from None
    deletion.finished_at = now
    await db_session.flush()
    return deletion


async def _begin(
    db_session: AsyncSession,
    root: Path,
    directory: Path,
    status: RetentionStatus,
    now: datetime,
    reason: str,
    deleted_by: str,
    deleted_by_id: int | None,
) -> RecordingDeletion:
    """Check the rules and the recording, then commit the deletion with its tombstone line."""
    stream_id = status.stream.id
    refused = refusal(status, now)
    if refused is not None:
        raise Conflict(refused)
    report = await verification.verify_catalogued(db_session=db_session, root=root, stream_id=stream_id)
    if report.problems:
        first = report.problems[0]
        places = (f"manifest line {first.line}" if first.line else "", first.file or "")
        where = ", ".join(place for place in places if place) or "the folder"
        raise Conflict(
            f"the recording of stream {stream_id} does not verify ({len(report.problems)} problem(s); "
            f"first: {first.kind.value} at {where}): deleting it would destroy the evidence of that. "
            "Nothing was deleted; see `zhihui verify`."
        )
    tombstone = await asyncio.to_thread(
        prepare_tombstone,
        directory,
        deleted_by=deleted_by,
        reason=reason,
        basis=RETENTION_BASIS,
        at=now,
        facts={"retention_days": status.retention_days, "kept_until": status.kept_until.isoformat()},
    )
    if tombstone is None:
        raise Conflict(f"the manifest of stream {stream_id} lists no segment left to delete")
    deletion = RecordingDeletion(
        stream_id=stream_id,
        deleted_at=now,
        deleted_by_id=deleted_by_id,
        deleted_by=deleted_by[:96],
        reason=reason,
        retention_days=status.retention_days,
        kept_until=status.kept_until,
        segments=len(tombstone.sequences),
        bytes=tombstone.bytes,
        entry_hash=tombstone.hash,
        line=tombstone.line.decode(),
    )
    db_session.add(deletion)
    await db_session.flush()
    segment_ids = await db_session.scalars(
        select(RecordingSegment.id).where(
            RecordingSegment.stream_id == stream_id, RecordingSegment.sequence.in_(tombstone.sequences)
        )
    )
    for segment_id in segment_ids.all():
        db_session.add(DeletedSegment(segment_id=segment_id, deletion_id=deletion.id))
    await db_session.commit()
    return deletion


def deletion_detail(deletion: RecordingDeletion) -> dict[str, object]:
    """What the audit log keeps of a deletion."""
    return {
        "deletion": deletion.id,
        "reason": deletion.reason,
        "segments": deletion.segments,
        "bytes": deletion.bytes,
        "kept_until": deletion.kept_until.isoformat(),
        "retention_days": deletion.retention_days,
        "tombstone": deletion.entry_hash,
    }
