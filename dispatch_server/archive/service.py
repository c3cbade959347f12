"""The catalog (R2): relay events become rows; searching streams with their segments and gaps.

Rows come from two places: the relay's :class:`~media_relay.events.SegmentSealed` and
:class:`~media_relay.events.RecordingGap` events as the recorder writes its manifests, and
:func:`reconcile` on start, which reads the manifests for what no event brought (segments sealed
after a crash, events lost while the server was down). Both insert what is missing, so a segment
is catalogued once however it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.archive.models import DeletedSegment, RecordingDeletion, RecordingGap, RecordingSegment
from dispatch_server.errors import NotFound
from dispatch_server.incidents.models import TimelineEntry
from dispatch_server.streams.models import Stream
from media_relay.events import RecordingGap as GapEvent
from media_relay.events import SegmentSealed
from media_relay.recording.catalog import manifest_events
from media_relay.recording.deletion import tombstones
from media_relay.recording.verify import find_streams

__all__ = [
    "StreamRecording",
    "catalog_event",
    "incidents_of_stream",
    "reconcile",
    "recording_of",
    "search",
    "streams_of_incident",
]

MAX_STREAMS = 500


@dataclass(slots=True)
class StreamRecording:
    """One stream's recording as the catalog knows it: its segments and gaps, oldest first."""

    stream: Stream
    segments: list[RecordingSegment] = field(default_factory=list)
    gaps: list[RecordingGap] = field(default_factory=list)


def _segment_row(event: SegmentSealed) -> RecordingSegment:
    return RecordingSegment(
        stream_id=event.stream_id,
        sequence=event.sequence,
        file=event.file,
        started_at=event.started_at,
        ended_at=event.ended_at,
        media_start=event.media_start,
        media_end=event.media_end,
        video_frames=event.frames.get("video", 0),
        audio_frames=event.frames.get("audio", 0),
        bytes=event.bytes,
        sha256=event.sha256,
        recovered=event.recovered,
        entry_hash=event.entry_hash,
    )


def _gap_row(event: GapEvent) -> RecordingGap:
    return RecordingGap(
        stream_id=event.stream_id,
        started_at=event.started_at,
        ended_at=event.ended_at,
        reason=event.reason[:128],
        entry_hash=event.entry_hash,
    )


async def catalog_event(*, db_session: AsyncSession, event: SegmentSealed | GapEvent) -> bool:
    """Insert the row for a sealed segment or a gap unless it is there; True when inserted."""
    if await db_session.get(Stream, event.stream_id) is None:
        return False  # a grant this server never issued
    if isinstance(event, SegmentSealed):
        exists = await db_session.scalar(
            select(RecordingSegment.id).where(
                RecordingSegment.stream_id == event.stream_id, RecordingSegment.sequence == event.sequence
            )
        )
        row: RecordingSegment | RecordingGap = _segment_row(event)
    else:
        exists = await db_session.scalar(
            select(RecordingGap.id).where(
                RecordingGap.stream_id == event.stream_id, RecordingGap.entry_hash == event.entry_hash
            )
        )
        row = _gap_row(event)
    if exists is not None:
        return False
    db_session.add(row)
    try:
        await db_session.commit()
    except IntegrityError:  # the same entry, catalogued at the same moment by another path
        await db_session.rollback()
        return False
    return True


async def reconcile(*, db_session: AsyncSession, root: Path) -> int:
    """Catalogue every manifest entry under ``root`` that the catalog lacks; return how many."""
    if not root.exists():
        return 0
    known = set((await db_session.scalars(select(Stream.id))).all())
    added = 0
    for stream_id, directory in find_streams(root).items():
        if stream_id not in known:
            continue
        sequences = set(
            (
                await db_session.scalars(
                    select(RecordingSegment.sequence).where(RecordingSegment.stream_id == stream_id)
                )
            ).all()
        )
        gaps = set(
            (
                await db_session.scalars(
                    select(RecordingGap.entry_hash).where(RecordingGap.stream_id == stream_id)
                )
            ).all()
        )
        for event in manifest_events(directory, root):
            if isinstance(event, SegmentSealed) and event.sequence not in sequences:
                db_session.add(_segment_row(event))
                sequences.add(event.sequence)
                added += 1
            elif isinstance(event, GapEvent) and event.entry_hash not in gaps:
                db_session.add(_gap_row(event))
                gaps.add(event.entry_hash)
                added += 1
        await db_session.flush()
        added += await _reconcile_deletions(db_session, stream_id, directory)
    await db_session.commit()
    return added


async def _reconcile_deletions(db_session: AsyncSession, stream_id: str, directory: Path) -> int:
    """Catalogue the tombstones (lawful deletions) of a stream's manifest the catalog lacks, as a
    catalog rebuilt from the manifests must: else their segments would look missing. (A tombstone
    forged before such a rebuild is taken as it reads: the audit log is then the witness.)"""
    known = set(
        (
            await db_session.scalars(
                select(RecordingDeletion.entry_hash).where(RecordingDeletion.stream_id == stream_id)
            )
        ).all()
    )
    added = 0
    for entry, entry_hash, line in tombstones(directory):
        if entry_hash in known:
            continue
        deleted_at = datetime.fromisoformat(str(entry["deleted_at"]))
        sequences = [s["sequence"] for s in entry.get("segments") or [] if isinstance(s, dict)]
        kept_until = entry.get("kept_until")
        deletion = RecordingDeletion(
            stream_id=stream_id,
            deleted_at=deleted_at,
            deleted_by=str(entry.get("deleted_by", ""))[:96],
            reason=str(entry.get("reason", "")),
            retention_days=int(entry.get("retention_days") or 0),
            kept_until=datetime.fromisoformat(kept_until) if isinstance(kept_until, str) else deleted_at,
            segments=len(sequences),
            bytes=sum(int(s.get("bytes") or 0) for s in entry.get("segments") or [] if isinstance(s, dict)),
            entry_hash=entry_hash,
            line=line,
            finished_at=deleted_at,
        )
        db_session.add(deletion)
        await db_session.flush()
        segment_ids = await db_session.scalars(
            select(RecordingSegment.id).where(
                RecordingSegment.stream_id == stream_id, RecordingSegment.sequence.in_(sequences)
            )
        )
        for segment_id in segment_ids.all():
            if await db_session.get(DeletedSegment, segment_id) is None:
                db_session.add(DeletedSegment(segment_id=segment_id, deletion_id=deletion.id))
        added += 1
    return added


async def search(
    *,
    db_session: AsyncSession,
    officer_ids: list[int] | None = None,
    stream_ids: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[StreamRecording]:
    """Streams with recorded segments or gaps in the window (all time when unbounded), newest
    stream first; each with only the segments and gaps that overlap the window. Segments a lawful
    deletion removed are left out (:mod:`dispatch_server.archive.retention`)."""
    segments_query = (
        select(RecordingSegment)
        .join(Stream, Stream.id == RecordingSegment.stream_id)
        .where(~exists().where(DeletedSegment.segment_id == RecordingSegment.id))
    )
    gaps_query = select(RecordingGap).join(Stream, Stream.id == RecordingGap.stream_id)
    if officer_ids:
        segments_query = segments_query.where(Stream.officer_id.in_(officer_ids))
        gaps_query = gaps_query.where(Stream.officer_id.in_(officer_ids))
    if stream_ids:
        segments_query = segments_query.where(RecordingSegment.stream_id.in_(stream_ids))
        gaps_query = gaps_query.where(RecordingGap.stream_id.in_(stream_ids))
    if since is not None:
        segments_query = segments_query.where(RecordingSegment.ended_at >= since)
        gaps_query = gaps_query.where(RecordingGap.ended_at >= since)
    if until is not None:
        segments_query = segments_query.where(RecordingSegment.started_at <= until)
        gaps_query = gaps_query.where(
            or_(RecordingGap.started_at.is_(None), RecordingGap.started_at <= until)
        )
    segments = (await db_session.scalars(segments_query.order_by(RecordingSegment.sequence))).all()
    gaps = (await db_session.scalars(gaps_query.order_by(RecordingGap.ended_at))).all()
    wanted = {row.stream_id for row in segments} | {row.stream_id for row in gaps}
    if not wanted:
        return []
    streams = (
        (
            await db_session.scalars(
                select(Stream)
                .where(Stream.id.in_(wanted))
                .order_by(Stream.started_at.desc(), Stream.id)
                .limit(MAX_STREAMS)
            )
        )
        .unique()
        .all()
    )
    found = {stream.id: StreamRecording(stream) for stream in streams}
    for segment in segments:
        if segment.stream_id in found:
            found[segment.stream_id].segments.append(segment)
    for gap in gaps:
        if gap.stream_id in found:
            found[gap.stream_id].gaps.append(gap)
    return list(found.values())


async def recording_of(*, db_session: AsyncSession, stream_id: str) -> StreamRecording:
    """One stream's whole recording; NotFound when nothing of it is catalogued."""
    found = await search(db_session=db_session, stream_ids=[stream_id])
    if not found or not found[0].segments:
        raise NotFound(f"no recording of stream {stream_id!r}")
    return found[0]


async def streams_of_incident(*, db_session: AsyncSession, incident_id: int) -> list[str]:
    """The streams an incident's timeline names (its officers' streams that went up or down while
    they were on it), oldest first."""
    rows = await db_session.execute(
        select(TimelineEntry.stream_id, TimelineEntry.id)
        .where(TimelineEntry.incident_id == incident_id, TimelineEntry.stream_id.is_not(None))
        .order_by(TimelineEntry.id)
    )
    return list(dict.fromkeys(str(stream_id) for stream_id, _ in rows))


async def incidents_of_stream(*, db_session: AsyncSession, stream_id: str) -> list[int]:
    """The incidents whose timelines name this stream."""
    rows = await db_session.scalars(
        select(TimelineEntry.incident_id).where(TimelineEntry.stream_id == stream_id).distinct()
    )
    return sorted(rows.all())
