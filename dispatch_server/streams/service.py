"""Streams (R1, R3): grants to publish and watch, and the relay's reports of streams up and down.
Grants are audited (R17), committed before they are given out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts import service as alerts
from dispatch_server.alerts.models import AlertKind, AlertLevel
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.errors import Conflict, Forbidden, NotFound
from dispatch_server.people.models import Person, Role
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import Bus, command_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import (
    StreamDownMessage,
    StreamHealthMessage,
    StreamUpMessage,
)
from dispatch_server.streams.models import Stream, StreamHealthRecord
from dispatch_server.streams.schemas import StreamOut
from media_relay.events import StorageAlert, StreamDown, StreamHealth, StreamUp
from zhihui.grants import GrantSigner

__all__ = [
    "grant_publish",
    "grant_view",
    "grant_view_of_officers",
    "list_live",
    "live_of",
    "record_relay_event",
    "stream_out",
]

STORAGE_DISK = "storage:disk"
"""The subject of the alert for the archive's disk running out of space."""


def stream_out(stream: Stream, relay_url: str) -> StreamOut:
    out = StreamOut.model_validate(stream)
    return out.model_copy(update={"whep_url": f"{relay_url}/whep/{stream.id}"})


async def grant_publish(
    *,
    db_session: AsyncSession,
    signer: GrantSigner,
    officer: Person,
    device: str,
    minutes: int,
    actor: audit.Actor,
) -> tuple[str, Stream, datetime]:
    """A new stream for this officer and device, and the grant that may publish it."""
    if officer.role is not Role.FIELD_OFFICER:
        raise Forbidden("only field officers publish streams")
    stream = Stream(
        id=f"{officer.username}-{device}-{uuid.uuid4().hex[:8]}", officer_id=officer.id, device=device
    )
    db_session.add(stream)
    await audit.record(
        db_session=db_session,
        action=AuditAction.STREAM_PUBLISH_GRANT,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object=f"stream:{stream.id}",
        detail={"device": device, "minutes": minutes},
    )
    await db_session.commit()
    token, claims = signer.publish(
        person_id=str(officer.id), name=officer.display_name, stream_id=stream.id, minutes=minutes
    )
    return token, stream, datetime.fromtimestamp(claims.exp, UTC)


async def grant_view(
    *,
    db_session: AsyncSession,
    signer: GrantSigner,
    viewer: Person,
    stream_ids: list[str],
    minutes: int,
    actor: audit.Actor,
) -> tuple[str, datetime]:
    """A grant to watch these streams (the command room may watch any)."""
    found = set((await db_session.scalars(select(Stream.id).where(Stream.id.in_(stream_ids)))).all())
    missing = [sid for sid in stream_ids if sid not in found]
    if missing:
        raise NotFound(f"unknown stream(s): {', '.join(missing)}")
    await audit.record(
        db_session=db_session,
        action=AuditAction.STREAM_VIEW_GRANT,
        outcome=Outcome.SUCCESS,
        actor=actor,
        object="streams",
        detail={"streams": list(stream_ids), "minutes": minutes},
    )
    await db_session.commit()
    token, claims = signer.view(person_id=str(viewer.id), stream_ids=list(stream_ids), minutes=minutes)
    return token, datetime.fromtimestamp(claims.exp, UTC)


async def live_of(*, db_session: AsyncSession, officer_ids: Iterable[int]) -> list[Stream]:
    """The live streams of these officers, oldest first."""
    query = (
        select(Stream)
        .where(
            Stream.officer_id.in_(list(officer_ids)),
            Stream.started_at.is_not(None),
            Stream.ended_at.is_(None),
        )
        .order_by(Stream.started_at, Stream.id)
    )
    return list((await db_session.scalars(query)).unique().all())


async def grant_view_of_officers(
    *,
    db_session: AsyncSession,
    signer: GrantSigner,
    viewer: Person,
    officer_ids: Iterable[int],
    stream_ids: list[str],
    minutes: int,
) -> tuple[str, list[str], datetime]:
    """A grant to watch streams of these officers (an incident's): the ``stream_ids`` named, which
    must all be theirs, or (none named) their live ones. The grant, the streams it names, its expiry."""
    officers = set(officer_ids)
    if stream_ids:
        rows = await db_session.execute(select(Stream.id, Stream.officer_id).where(Stream.id.in_(stream_ids)))
        found = {sid: officer_id for sid, officer_id in rows.tuples()}
        missing = [sid for sid in stream_ids if sid not in found]
        if missing:
            raise NotFound(f"unknown stream(s): {', '.join(missing)}")
        outside = [sid for sid in stream_ids if found[sid] not in officers]
        if outside:
            raise Forbidden(f"not a stream of an officer on the incident: {', '.join(outside)}")
        chosen = list(dict.fromkeys(stream_ids))
    else:
        chosen = [stream.id for stream in await live_of(db_session=db_session, officer_ids=officers)]
        if not chosen:
            raise Conflict("none of the incident's officers is streaming live")
    token, claims = signer.view(person_id=str(viewer.id), stream_ids=chosen, minutes=minutes)
    return token, chosen, datetime.fromtimestamp(claims.exp, UTC)


async def list_live(*, db_session: AsyncSession) -> list[Stream]:
    query = (
        select(Stream)
        .where(Stream.started_at.is_not(None), Stream.ended_at.is_(None))
        .order_by(Stream.started_at)
    )
    return list((await db_session.scalars(query)).all())


async def end_orphaned_streams(*, db_session: AsyncSession, bus: Bus, reason: str) -> int:
    """End the streams a previous run left live (its relay died with them); return how many.

    Only for one dispatch process with its own relay: with several, another process's relay may
    still be serving them.
    """
    await eventlog.hold(db_session=db_session)
    orphans = await list_live(db_session=db_session)
    now = datetime.now(UTC)
    for stream in orphans:
        stream.ended_at = now
        stream.end_reason = reason
    logged = await eventlog.record(
        db_session=db_session,
        events=[
            LoggedEvent(command_channel(), StreamDownMessage(stream_id=s.id), f"stream:{s.id}")
            for s in orphans
        ],
    )
    await db_session.commit()
    await eventlog.publish(bus=bus, events=logged)
    return len(orphans)


async def record_storage_alert(*, db_session: AsyncSession, bus: Bus, event: StorageAlert) -> None:
    """The relay's disk warning or write failure (R2): an alert for the command room, open until
    the disk has room again (``ok``) or, for a failed write, until someone resolves it."""
    if event.level == "ok":
        logged = await alerts.resolve_open(
            db_session=db_session,
            kind=AlertKind.STORAGE,
            subject=STORAGE_DISK,
            now=event.at,
            note=event.message,
        )
    else:
        failed = event.level == "write_failed"
        logged = await alerts.raise_alert(
            db_session=db_session,
            kind=AlertKind.STORAGE,
            subject=f"storage:write:{event.stream_id}" if failed else STORAGE_DISK,
            message=event.message,
            level=AlertLevel.CRITICAL if failed else AlertLevel.WARNING,
            now=event.at,
            stream_id=event.stream_id or None,
        )
    await db_session.commit()
    await eventlog.publish(bus=bus, events=logged)


async def record_relay_event(
    *, db_session: AsyncSession, bus: Bus, event: StreamUp | StreamDown | StreamHealth, relay_url: str
) -> None:
    """SQL first (the change and its event in one transaction), then push to the command room."""
    await eventlog.hold(db_session=db_session)
    stream = await db_session.get(Stream, event.stream_id)
    if stream is None:
        return  # a grant this server never issued: nothing to show
    message: StreamUpMessage | StreamDownMessage | StreamHealthMessage
    if isinstance(event, StreamHealth):
        record = await db_session.get(StreamHealthRecord, stream.id)
        if record is None:
            record = StreamHealthRecord(stream_id=stream.id)
            db_session.add(record)
        record.flags = ",".join(event.flags)
        record.changed_at = event.at
        message = StreamHealthMessage(stream_id=stream.id, flags=event.flags, at=event.at)
    elif isinstance(event, StreamUp):
        stream.started_at = stream.started_at or event.started_at
        stream.ended_at = None
        stream.end_reason = None
        stream.video_codec = event.video_codec
        stream.audio_codec = event.audio_codec
        await db_session.flush()
        await db_session.refresh(stream)
        message = StreamUpMessage(stream=stream_out(stream, relay_url))
    else:
        stream.ended_at = event.ended_at
        stream.end_reason = event.reason
        message = StreamDownMessage(stream_id=stream.id)
    logged = await eventlog.record(
        db_session=db_session, events=[LoggedEvent(command_channel(), message, f"stream:{stream.id}")]
    )
    await db_session.commit()
    await eventlog.publish(bus=bus, events=logged)
