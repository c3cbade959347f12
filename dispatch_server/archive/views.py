"""The archive's routes: search, playback, verification, exports, the archive page (R2, R17).

Every attempt is audited, refused ones included. A browser's ``<video>`` and download links cannot
send a bearer token: they carry a ticket (see :mod:`dispatch_server.archive.tickets`) instead.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy import select

from dispatch_server.archive import exports as export_service
from dispatch_server.archive import remux, verification
from dispatch_server.archive import service as catalog
from dispatch_server.archive.exports import ExportRunner, ExportState, Selection
from dispatch_server.archive.models import Export
from dispatch_server.archive.schemas import (
    ExportIn,
    ExportOut,
    GapOut,
    RecordingOut,
    SegmentOut,
    TicketOut,
    VerifyOut,
    VerifyProblemOut,
)
from dispatch_server.archive.tickets import ArchiveTickets
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.views import actor_of, client_address, record_success
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession
from dispatch_server.errors import Conflict, DomainError, Forbidden, NotFound, Unauthorized
from dispatch_server.ids import Id
from dispatch_server.people.models import COMMAND_ROLES, WATCH_ROLES, Person, Role
from dispatch_server.people.schemas import UserOut
from dispatch_server.web.views import STATIC_DIR

__all__ = ["ARCHIVE_ROLES", "EXPORT_ROLES", "Archive", "router"]

router = APIRouter(tags=["archive"])

ARCHIVE_ROLES = WATCH_ROLES
"""Who may search and play recordings: commanders, leaders, duty officers, administrators."""
EXPORT_ROLES = COMMAND_ROLES
"""Who may export evidence packages: commanders, leaders, administrators."""


@dataclass
class Archive:
    """What the archive's routes need, on ``app.state.archive``."""

    root: Path
    tickets: ArchiveTickets
    exports: ExportRunner


def _archive(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


async def _allow(
    context: Ctx, request: Request, user: Person, roles: frozenset[Role], action: AuditAction, object: str
) -> audit.Actor:
    """The actor, once the role allows the action; else the refusal is audited and raised."""
    actor = actor_of(user, request)
    if user.role not in roles:
        await audit.record_committed(
            database=context.db, action=action, outcome=Outcome.DENIED, actor=actor, object=object
        )
        raise Forbidden(f"a {user.role.value} may not do this")
    return actor


async def _failed(
    context: Ctx, actor: audit.Actor, action: AuditAction, object: str, error: DomainError
) -> None:
    await audit.record_committed(
        database=context.db,
        action=action,
        outcome=Outcome.FAILURE,
        actor=actor,
        object=object,
        detail={"error": error.message},
    )


async def _person(
    request: Request,
    context: Ctx,
    db_session: DbSession,
    ticket: str | None,
    object: str,
    action: AuditAction | None = None,
) -> Person:
    """The person behind a bearer token, or behind a ticket for this object. With ``action``, an
    attempt without valid credentials is audited too (by source address: nobody is known)."""
    try:
        scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
        if scheme.lower() == "bearer" and token:
            person_id = context.tokens.verify(token).person_id
        elif ticket:
            person_id = _archive(request).tickets.verify(ticket, object=object)
        else:
            raise Unauthorized("sign in first: an access token or a ticket is required")
        person = await db_session.get(Person, person_id)
        if person is None or not person.active:
            raise Unauthorized("this account is no longer active")
    except Unauthorized as error:
        if action is not None:
            nobody = audit.Actor(person_id=None, name="", role="", source=client_address(request))
            await audit.record_committed(
                database=context.db,
                action=action,
                outcome=Outcome.DENIED,
                actor=nobody,
                object=object,
                detail={"error": error.message, "ticket": bool(ticket)},
            )
        raise
    return person


# -- the page --------------------------------------------------------------------------------------


@router.get("/archive", include_in_schema=False)
async def archive_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "archive.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


# -- search ----------------------------------------------------------------------------------------


def _recording_out(recording: catalog.StreamRecording) -> RecordingOut:
    stream = recording.stream
    return RecordingOut(
        stream_id=stream.id,
        officer=UserOut.model_validate(stream.officer),
        device=stream.device,
        video_codec=stream.video_codec,
        audio_codec=stream.audio_codec,
        live=stream.live,
        container=remux.container_for(stream.video_codec),
        started_at=min((s.started_at for s in recording.segments), default=None),
        ended_at=max((s.ended_at for s in recording.segments), default=None),
        bytes=sum(s.bytes for s in recording.segments),
        segments=[SegmentOut.model_validate(s) for s in recording.segments],
        gaps=[GapOut.model_validate(g) for g in recording.gaps],
    )


@router.get("/api/recordings", response_model=list[RecordingOut], summary="Search recorded streams")
async def search_recordings(
    request: Request,
    context: Ctx,
    db_session: DbSession,
    user: CurrentUser,
    officer_id: Annotated[list[Id] | None, Query()] = None,
    stream_id: Annotated[list[str] | None, Query()] = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> list[RecordingOut]:
    actor = await _allow(context, request, user, ARCHIVE_ROLES, AuditAction.ARCHIVE_SEARCH, "recordings")
    found = await catalog.search(
        db_session=db_session, officer_ids=officer_id, stream_ids=stream_id, since=from_, until=to
    )
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_SEARCH,
        "recordings",
        {
            "officer_id": officer_id,
            "stream_id": stream_id,
            "from": from_.isoformat() if from_ else None,
            "to": to.isoformat() if to else None,
            "streams": len(found),
        },
    )
    await db_session.commit()
    return [_recording_out(recording) for recording in found]


# -- playback --------------------------------------------------------------------------------------


@router.post(
    "/api/recordings/{stream_id}/ticket", response_model=TicketOut, summary="A ticket to play a recording"
)
async def play_ticket(
    stream_id: str, request: Request, context: Ctx, user: CurrentUser, start: datetime | None = None
) -> TicketOut:
    await _allow(context, request, user, ARCHIVE_ROLES, AuditAction.ARCHIVE_PLAY, f"stream:{stream_id}")
    ticket, expires_at = _archive(request).tickets.issue(person_id=user.id, object=f"stream:{stream_id}")
    query = {"ticket": ticket, **({"start": start.isoformat()} if start else {})}
    url = f"/api/recordings/{stream_id}/play?{urlencode(query)}"
    return TicketOut(ticket=ticket, expires_at=expires_at, url=url)


@router.get(
    "/api/recordings/{stream_id}/play",
    summary="Play a recording: its segments joined and remuxed on the fly (WebM or fragmented MP4)",
    response_class=StreamingResponse,
)
async def play(
    stream_id: str,
    request: Request,
    context: Ctx,
    db_session: DbSession,
    start: Annotated[datetime | None, Query(description="Where to start (UTC), else at the start")] = None,
    ticket: Annotated[str | None, Query(description="From POST .../ticket, when no bearer token")] = None,
) -> StreamingResponse:
    object = f"stream:{stream_id}"
    user = await _person(request, context, db_session, ticket, object, AuditAction.ARCHIVE_PLAY)
    actor = await _allow(context, request, user, ARCHIVE_ROLES, AuditAction.ARCHIVE_PLAY, object)
    try:
        recording = await catalog.recording_of(db_session=db_session, stream_id=stream_id)
    except NotFound as error:
        await _failed(context, actor, AuditAction.ARCHIVE_PLAY, object, error)
        raise
    segments = [s for s in recording.segments if s.video_frames + s.audio_frames > 0]
    offset = 0.0
    if start is not None:
        later = [s for s in segments if s.ended_at > start]
        if not later:
            too_late = NotFound(f"stream {stream_id!r} has no recording after {start.isoformat()}")
            await _failed(context, actor, AuditAction.ARCHIVE_PLAY, object, too_late)
            raise too_late
        offset = max(0.0, (start - later[0].started_at).total_seconds())
        segments = later
    root = _archive(request).root
    paths = [root / s.file for s in segments]
    missing = [s.file for s, path in zip(segments, paths, strict=True) if not path.exists()]
    if missing:
        lost = Conflict(f"segment file(s) missing from the archive: {', '.join(missing[:5])}")
        await _failed(context, actor, AuditAction.ARCHIVE_PLAY, object, lost)
        raise lost
    container = remux.container_for(recording.stream.video_codec)
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_PLAY,
        object,
        {
            "start": start.isoformat() if start else None,
            "segments": [s.sequence for s in segments],
            "container": container,
        },
    )
    await db_session.commit()
    listing = await asyncio.to_thread(remux.concat_list, paths)
    with tempfile.NamedTemporaryFile("w", suffix=".ffconcat", delete=False, encoding="utf-8") as handle:
        handle.write(listing)
    concat = Path(handle.name)
    args = remux.remux_args(concat, "pipe:1", container, start_seconds=offset, streaming=True)
    return StreamingResponse(
        remux.stream_remux(args, cleanup=[concat]),
        media_type=remux.MEDIA_TYPES[container],
        headers={"Cache-Control": "no-store", "Accept-Ranges": "none", "X-Content-Type-Options": "nosniff"},
    )


# -- verification ------------------------------------------------------------------------------------


@router.post("/api/recordings/{stream_id}/verify", response_model=VerifyOut, summary="Check a recording")
async def verify_recording(
    stream_id: str, request: Request, context: Ctx, db_session: DbSession, user: CurrentUser
) -> VerifyOut:
    object = f"stream:{stream_id}"
    actor = await _allow(context, request, user, ARCHIVE_ROLES, AuditAction.ARCHIVE_VERIFY, object)
    root = _archive(request).root
    try:
        report = await verification.verify_catalogued(db_session=db_session, root=root, stream_id=stream_id)
    except NotFound as error:
        await _failed(context, actor, AuditAction.ARCHIVE_VERIFY, object, error)
        raise
    catalogued = await verification.catalogued_lines(db_session=db_session, stream_id=stream_id)
    await audit.record(
        db_session=db_session,
        action=AuditAction.ARCHIVE_VERIFY,
        outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
        actor=actor,
        object=object,
        detail={"ok": report.ok, "problems": len(report.problems), "head": report.head},
    )
    await db_session.commit()
    return VerifyOut(
        stream_id=stream_id,
        ok=report.ok,
        segments=report.segments,
        gaps=report.gaps,
        deleted=report.deleted,
        head=report.head,
        catalog_head=verification.catalog_head(report, catalogued),
        problems=[
            VerifyProblemOut(
                kind=p.kind.value, line=p.line, file=p.file, expected=p.expected, found=p.found, note=p.note
            )
            for p in report.problems
        ],
    )


# Deletion, retention and holds: dispatch_server.archive.retention_views.


# -- exports ---------------------------------------------------------------------------------------


def _export_out(export: Export) -> ExportOut:
    return ExportOut(
        id=export.id,
        state=export.state,
        progress=export.progress,
        percent=int(export.progress * 100),
        requested_at=export.requested_at,
        finished_at=export.finished_at,
        error=export.error,
        bytes=export.bytes,
        sha256=export.sha256,
        selection=Selection.from_json(export.query).describe(),
    )


@router.post("/api/exports", response_model=ExportOut, status_code=202, summary="Export an evidence package")
async def create_export(
    body: ExportIn, request: Request, context: Ctx, db_session: DbSession, user: CurrentUser
) -> ExportOut:
    selection = Selection(
        stream_ids=body.stream_ids, since=body.from_, until=body.to, officer_ids=body.officer_ids
    )
    object = "recordings"
    actor = await _allow(context, request, user, EXPORT_ROLES, AuditAction.ARCHIVE_EXPORT, object)
    archive = _archive(request)
    try:
        plan = await export_service.plan(
            db_session=db_session,
            selection=selection,
            root=archive.root,
            requested_by=f"{user.display_name} ({user.username}, {user.role.value})",
        )
    except DomainError as error:
        await _failed(context, actor, AuditAction.ARCHIVE_EXPORT, object, error)
        raise
    export = await export_service.create(db_session=db_session, selection=selection, requested_by=user.id)
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_EXPORT,
        f"export:{export.id}",
        {
            "stage": "requested",
            "selection": selection.describe(),
            "streams": [stream.stream_id for stream in plan.streams],
            "segments": sum(len(stream.segments) for stream in plan.streams),
        },
    )
    await db_session.commit()
    archive.exports.submit(export.id, plan=plan, actor=actor)
    return _export_out(export)


async def _own_export(db_session: DbSession, user: Person, export_id: Id) -> Export:
    export = await db_session.get(Export, export_id)
    if export is None or (export.requested_by != user.id and user.role not in (Role.ADMIN, Role.LEADER)):
        raise NotFound(f"there is no export {export_id}")
    return export


@router.get("/api/exports/{export_id}", response_model=ExportOut, summary="An export's progress")
async def get_export(export_id: Id, db_session: DbSession, user: CurrentUser) -> ExportOut:
    return _export_out(await _own_export(db_session, user, export_id))


@router.get("/api/exports", response_model=list[ExportOut], summary="My recent exports")
async def list_exports(db_session: DbSession, user: CurrentUser) -> list[ExportOut]:
    rows = await db_session.scalars(
        select(Export).where(Export.requested_by == user.id).order_by(Export.id.desc()).limit(20)
    )
    return [_export_out(export) for export in rows]


@router.post("/api/exports/{export_id}/ticket", response_model=TicketOut, summary="A ticket to download")
async def download_ticket(
    export_id: Id, request: Request, db_session: DbSession, user: CurrentUser
) -> TicketOut:
    export = await _own_export(db_session, user, export_id)
    ticket, expires_at = _archive(request).tickets.issue(person_id=user.id, object=f"export:{export.id}")
    url = f"/api/exports/{export.id}/download?{urlencode({'ticket': ticket})}"
    return TicketOut(ticket=ticket, expires_at=expires_at, url=url)


@router.get("/api/exports/{export_id}/download", response_class=FileResponse, summary="The package (zip)")
async def download_export(
    export_id: Id,
    request: Request,
    context: Ctx,
    db_session: DbSession,
    ticket: Annotated[str | None, Query()] = None,
) -> FileResponse:
    object = f"export:{export_id}"
    user = await _person(request, context, db_session, ticket, object, AuditAction.ARCHIVE_EXPORT_DOWNLOAD)
    actor = await _allow(context, request, user, EXPORT_ROLES, AuditAction.ARCHIVE_EXPORT_DOWNLOAD, object)
    try:
        export = await _own_export(db_session, user, export_id)
        path = _archive(request).exports.zip_path(export)
        if export.state != ExportState.DONE or path is None or not path.exists():
            raise Conflict(f"export {export_id} is {export.state}, not ready to download")
    except DomainError as error:
        await _failed(context, actor, AuditAction.ARCHIVE_EXPORT_DOWNLOAD, object, error)
        raise
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_EXPORT_DOWNLOAD,
        object,
        {"sha256": export.sha256, "bytes": export.bytes},
    )
    await db_session.commit()
    return FileResponse(path, media_type="application/zip", filename=path.name)
