"""The archive's redaction routes (issue 4): ask for a copy of a recording with the faces blurred,
follow its progress, list the copies made, download one (with a ticket, like an export).

Who may ask and download: those who may export. Every attempt is audited, refusals included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from dispatch_server.archive import redaction as redactions
from dispatch_server.archive.models import Redaction, RedactionState
from dispatch_server.archive.redaction import RedactionRunner
from dispatch_server.archive.remux import MEDIA_TYPES
from dispatch_server.archive.schemas import TicketOut
from dispatch_server.archive.views import EXPORT_ROLES, _allow, _archive, _failed, _person
from dispatch_server.audit.models import AuditAction
from dispatch_server.audit.views import record_success
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession
from dispatch_server.errors import Conflict, DomainError, NotFound
from dispatch_server.ids import Id
from dispatch_server.people.models import Person, Role

__all__ = ["RedactionIn", "RedactionOut", "router"]

router = APIRouter(tags=["archive"])

SEE_ALL = frozenset({Role.ADMIN, Role.LEADER})
"""Who sees every redaction, not only their own."""


class RedactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    stream_id: str = Field(min_length=1, max_length=96)
    from_: datetime | None = Field(
        None, alias="from", description="Start of a time range (UTC); else the start"
    )
    to: datetime | None = Field(None, description="End of the time range; else the end")


class SourceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sequence: int
    file: str
    sha256: str = Field(description="The segment's SHA-256, as its manifest entry records it.")


class RedactionOut(BaseModel):
    id: int
    stream_id: str
    state: RedactionState
    progress: float = Field(description="0 to 1")
    percent: int
    requested_by: str
    requested_at: datetime
    from_: datetime | None = Field(serialization_alias="from")
    to: datetime | None
    finished_at: datetime | None
    error: str | None
    bytes: int | None
    sha256: str | None = Field(description="The copy's SHA-256, once done.")
    frames: int | None
    frames_with_faces: int | None
    derived_from: list[SourceOut] = Field(description="The segments it was made from, with their hashes.")


def _out(redaction: Redaction) -> RedactionOut:
    return RedactionOut(
        id=redaction.id,
        stream_id=redaction.stream_id,
        state=redaction.state,
        progress=redaction.progress,
        percent=int(redaction.progress * 100),
        requested_by=redaction.requested_by_name,
        requested_at=redaction.requested_at,
        from_=redaction.since,
        to=redaction.until,
        finished_at=redaction.finished_at,
        error=redaction.error,
        bytes=redaction.bytes,
        sha256=redaction.sha256,
        frames=redaction.frames,
        frames_with_faces=redaction.frames_with_faces,
        derived_from=[SourceOut.model_validate(source) for source in redaction.sources],
    )


def _runner(request: Request) -> RedactionRunner:
    return request.app.state.redactions  # type: ignore[no-any-return]


@router.post(
    "/api/redactions",
    response_model=RedactionOut,
    response_model_by_alias=True,
    status_code=202,
    summary="Make a copy of a recording with the faces blurred",
)
async def create_redaction(
    body: RedactionIn, request: Request, context: Ctx, db_session: DbSession, user: CurrentUser
) -> RedactionOut:
    object = f"stream:{body.stream_id}"
    actor = await _allow(context, request, user, EXPORT_ROLES, AuditAction.ARCHIVE_REDACT, object)
    try:
        plan = await redactions.plan(
            db_session=db_session,
            root=_archive(request).root,
            stream_id=body.stream_id,
            since=body.from_,
            until=body.to,
        )
    except DomainError as error:
        await _failed(context, actor, AuditAction.ARCHIVE_REDACT, object, error)
        raise
    redaction = await redactions.create(
        db_session=db_session,
        plan=plan,
        requested_by=user.id,
        requested_by_name=f"{user.display_name} ({user.username}, {user.role.value})",
    )
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_REDACT,
        f"redaction:{redaction.id}",
        {
            "stage": "requested",
            "stream_id": plan.stream_id,
            "from": body.from_.isoformat() if body.from_ else None,
            "to": body.to.isoformat() if body.to else None,
            "derived_from": [source.segment.sha256 for source in plan.sources],
        },
    )
    await db_session.commit()
    _runner(request).submit(
        redaction.id,
        plan=plan,
        actor=actor,
        requested_by=redaction.requested_by_name,
        requested_at=redaction.requested_at,
    )
    return _out(redaction)


async def _visible(db_session: DbSession, user: Person, redaction_id: Id) -> Redaction:
    redaction = await db_session.get(Redaction, redaction_id)
    if redaction is None or (redaction.requested_by != user.id and user.role not in SEE_ALL):
        raise NotFound(f"there is no redaction {redaction_id}")
    return redaction


@router.get(
    "/api/redactions",
    response_model=list[RedactionOut],
    response_model_by_alias=True,
    summary="Redacted copies: mine (administrators and leaders: everyone's), newest first",
)
async def list_redactions(
    db_session: DbSession,
    user: CurrentUser,
    stream_id: Annotated[str | None, Query(description="Only copies of this stream")] = None,
) -> list[RedactionOut]:
    query = select(Redaction).order_by(Redaction.id.desc()).limit(50)
    if user.role not in SEE_ALL:
        query = query.where(Redaction.requested_by == user.id)
    if stream_id is not None:
        query = query.where(Redaction.stream_id == stream_id)
    return [_out(redaction) for redaction in await db_session.scalars(query)]


@router.get(
    "/api/redactions/{redaction_id}",
    response_model=RedactionOut,
    response_model_by_alias=True,
    summary="A redaction's progress and sources",
)
async def get_redaction(redaction_id: Id, db_session: DbSession, user: CurrentUser) -> RedactionOut:
    return _out(await _visible(db_session, user, redaction_id))


@router.post(
    "/api/redactions/{redaction_id}/ticket", response_model=TicketOut, summary="A ticket to download a copy"
)
async def redaction_ticket(
    redaction_id: Id, request: Request, db_session: DbSession, user: CurrentUser
) -> TicketOut:
    redaction = await _visible(db_session, user, redaction_id)
    object = f"redaction:{redaction.id}"
    ticket, expires_at = _archive(request).tickets.issue(person_id=user.id, object=object)
    url = f"/api/redactions/{redaction.id}/download?{urlencode({'ticket': ticket})}"
    return TicketOut(ticket=ticket, expires_at=expires_at, url=url)


@router.get(
    "/api/redactions/{redaction_id}/download",
    response_class=FileResponse,
    summary="The redacted copy (WebM or MP4; plays in a browser)",
)
async def download_redaction(
    redaction_id: Id,
    request: Request,
    context: Ctx,
    db_session: DbSession,
    ticket: Annotated[str | None, Query(description="From POST .../ticket, when no bearer token")] = None,
) -> FileResponse:
    object = f"redaction:{redaction_id}"
    user = await _person(request, context, db_session, ticket, object)
    actor = await _allow(context, request, user, EXPORT_ROLES, AuditAction.ARCHIVE_REDACTION_DOWNLOAD, object)
    try:
        redaction = await _visible(db_session, user, redaction_id)
        path = _runner(request).path_of(redaction)
        if redaction.state != RedactionState.DONE or path is None or not path.exists():
            raise Conflict(f"redaction {redaction_id} is {redaction.state}, not ready to download")
    except DomainError as error:
        await _failed(context, actor, AuditAction.ARCHIVE_REDACTION_DOWNLOAD, object, error)
        raise
    await record_success(
        db_session,
        actor,
        AuditAction.ARCHIVE_REDACTION_DOWNLOAD,
        object,
        {"stream_id": redaction.stream_id, "sha256": redaction.sha256, "bytes": redaction.bytes},
    )
    await db_session.commit()
    container = path.suffix.lstrip(".")
    return FileResponse(
        path, media_type=MEDIA_TYPES.get(container, "application/octet-stream"), filename=path.name
    )
