"""The incidents' routes (R5). Every change is audited with the change (in the service); an attempt
refused after sign-in (a role that may not, an incident it may not see, a clash: 403, 404, 409) is
audited as denied, and one that breaks a rule (422) as a failure, in a transaction of its own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.views import actor_of
from dispatch_server.auth.deps import Ctx, CurrentUser, DbSession, Now, require_roles
from dispatch_server.errors import DomainError, Forbidden, Invalid
from dispatch_server.ids import Count, Id
from dispatch_server.incidents import service
from dispatch_server.incidents.models import IncidentKind, IncidentStatus
from dispatch_server.incidents.schemas import (
    IncidentIn,
    IncidentOut,
    IncidentPage,
    IncidentPatch,
    NoteIn,
    PeopleIn,
    TimelineEntryOut,
    TimelinePage,
)
from dispatch_server.paging import Paging
from dispatch_server.people.models import COMMAND_ROLES, Person, Role
from dispatch_server.people.schemas import UserOut

router = APIRouter(prefix="/api/incidents", tags=["incidents"])

Reader = Annotated[Person, Depends(require_roles(*service.READ_ROLES))]
Commander = Annotated[Person, Depends(require_roles(*COMMAND_ROLES))]


@contextlib.asynccontextmanager
async def _attempt(
    context: Ctx,
    db_session: DbSession,
    request: Request,
    user: Person,
    roles: Collection[Role],
    action: AuditAction,
    object: str,
    **detail: Any,
) -> AsyncIterator[audit.Actor]:
    """Check the role, then run the change with the actor its audit record names; if the role or
    the change is refused, roll back and audit the attempt."""
    actor = actor_of(user, request)
    try:
        if user.role not in roles:
            raise Forbidden(f"a {user.role.value} may not do this")
        yield actor
    except DomainError as error:
        await db_session.rollback()
        await audit.record_committed(
            database=context.db,
            action=action,
            outcome=Outcome.FAILURE if isinstance(error, Invalid) else Outcome.DENIED,
            actor=actor,
            object=object,
            detail={**detail, "error": error.message},
        )
        raise


@router.post("", response_model=IncidentOut, status_code=201, summary="Open an incident")
async def open_incident(
    body: IncidentIn, request: Request, context: Ctx, now: Now, db_session: DbSession, user: CurrentUser
) -> IncidentOut:
    async with _attempt(
        context, db_session, request, user, service.MANAGE_ROLES, AuditAction.INCIDENT_OPEN, "incidents"
    ) as actor:
        incident = await service.open_incident(
            db_session=db_session,
            opener=user,
            kind=body.kind,
            title=body.title,
            case_number=body.case_number,
            place=body.place,
            commander_id=body.commander_id,
            officer_ids=body.officer_ids,
            now=now,
            audit_actor=actor,
        )
    return IncidentOut.model_validate(incident)


@router.get("", response_model=IncidentPage, summary="Incidents I may see, newest first, a page at a time")
async def list_incidents(
    db_session: DbSession,
    user: Reader,
    page: Paging,
    status: IncidentStatus | None = None,
    kind: IncidentKind | None = None,
    case_number: Annotated[str | None, Query(max_length=64)] = None,
    officer_id: Annotated[Id | None, Query(description="Only incidents this officer is on.")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Words in the title or place.")] = None,
) -> IncidentPage:
    items, total = await service.list_visible(
        db_session=db_session,
        person=user,
        status=status,
        kind=kind,
        case_number=case_number,
        officer_id=officer_id,
        text=q,
        limit=page.limit,
        offset=page.offset,
    )
    return IncidentPage.of([IncidentOut.model_validate(i) for i in items], total, page)


@router.get("/{incident_id}", response_model=IncidentOut, summary="One incident")
async def get_incident(incident_id: Id, db_session: DbSession, user: Reader) -> IncidentOut:
    return IncidentOut.model_validate(
        await service.get_visible(db_session=db_session, person=user, incident_id=incident_id)
    )


@router.patch("/{incident_id}", response_model=IncidentOut, summary="Change, close or reopen an incident")
async def update_incident(
    incident_id: Id,
    body: IncidentPatch,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: CurrentUser,
) -> IncidentOut:
    action = AuditAction.INCIDENT_UPDATE
    if body.status is not None:
        closing = body.status is IncidentStatus.CLOSED
        action = AuditAction.INCIDENT_CLOSE if closing else AuditAction.INCIDENT_REOPEN
    object = f"incident:{incident_id}"
    async with _attempt(context, db_session, request, user, service.MANAGE_ROLES, action, object) as actor:
        incident = await service.update(
            db_session=db_session,
            actor=user,
            incident_id=incident_id,
            changes=body.model_dump(exclude_unset=True),
            now=now,
            audit_actor=actor,
        )
    return IncidentOut.model_validate(incident)


@router.post("/{incident_id}/officers", response_model=IncidentOut, summary="Put officers on an incident")
async def assign_officers(
    incident_id: Id,
    body: PeopleIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: CurrentUser,
) -> IncidentOut:
    async with _attempt(
        context,
        db_session,
        request,
        user,
        service.MANAGE_ROLES,
        AuditAction.INCIDENT_ASSIGN,
        f"incident:{incident_id}",
        officer_ids=body.person_ids,
    ) as actor:
        incident = await service.assign(
            db_session=db_session,
            actor=user,
            incident_id=incident_id,
            person_ids=body.person_ids,
            now=now,
            audit_actor=actor,
        )
    return IncidentOut.model_validate(incident)


@router.delete(
    "/{incident_id}/officers/{person_id}", response_model=IncidentOut, summary="Take an officer off"
)
async def unassign_officer(
    incident_id: Id,
    person_id: Id,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: CurrentUser,
) -> IncidentOut:
    async with _attempt(
        context,
        db_session,
        request,
        user,
        service.MANAGE_ROLES,
        AuditAction.INCIDENT_UNASSIGN,
        f"incident:{incident_id}",
        person_id=person_id,
    ) as actor:
        incident = await service.unassign(
            db_session=db_session,
            actor=user,
            incident_id=incident_id,
            person_id=person_id,
            now=now,
            audit_actor=actor,
        )
    return IncidentOut.model_validate(incident)


@router.get("/{incident_id}/shares", response_model=list[UserOut], summary="Who outside it is shared with")
async def list_shares(incident_id: Id, db_session: DbSession, user: Commander) -> list[UserOut]:
    await service.get_visible(db_session=db_session, person=user, incident_id=incident_id)
    return [
        UserOut.model_validate(p)
        for p in await service.shared_with(db_session=db_session, incident_id=incident_id)
    ]


@router.post(
    "/{incident_id}/shares", response_model=list[UserOut], summary="Share with upper-court observers"
)
async def share_incident(
    incident_id: Id,
    body: PeopleIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: CurrentUser,
) -> list[UserOut]:
    async with _attempt(
        context,
        db_session,
        request,
        user,
        COMMAND_ROLES,
        AuditAction.INCIDENT_SHARE,
        f"incident:{incident_id}",
        person_ids=body.person_ids,
    ) as actor:
        shared = await service.share(
            db_session=db_session,
            actor=user,
            incident_id=incident_id,
            person_ids=body.person_ids,
            now=now,
            audit_actor=actor,
        )
    return [UserOut.model_validate(p) for p in shared]


@router.delete("/{incident_id}/shares/{person_id}", status_code=204, summary="Stop sharing")
async def unshare_incident(
    incident_id: Id,
    person_id: Id,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: CurrentUser,
) -> Response:
    async with _attempt(
        context,
        db_session,
        request,
        user,
        COMMAND_ROLES,
        AuditAction.INCIDENT_UNSHARE,
        f"incident:{incident_id}",
        person_id=person_id,
    ) as actor:
        await service.unshare(
            db_session=db_session,
            actor=user,
            incident_id=incident_id,
            person_id=person_id,
            now=now,
            audit_actor=actor,
        )
    return Response(status_code=204)


@router.get(
    "/{incident_id}/timeline",
    response_model=TimelinePage,
    summary="Everything that happened on an incident, oldest first, a page at a time",
)
async def get_timeline(
    incident_id: Id,
    db_session: DbSession,
    user: Reader,
    after: Annotated[Count, Query(description="The last entry id already seen.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TimelinePage:
    await service.get_visible(db_session=db_session, person=user, incident_id=incident_id)
    entries = await service.timeline(db_session=db_session, incident_id=incident_id, after=after, limit=limit)
    return TimelinePage(
        items=[TimelineEntryOut.model_validate(e) for e in entries],
        next_after=entries[-1].id if len(entries) == limit else None,
    )


@router.post("/{incident_id}/notes", response_model=TimelineEntryOut, status_code=201, summary="Add a note")
async def add_note(
    incident_id: Id,
    body: NoteIn,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: CurrentUser,
) -> TimelineEntryOut:
    object = f"incident:{incident_id}"
    async with _attempt(
        context, db_session, request, user, service.NOTE_ROLES, AuditAction.INCIDENT_NOTE, object
    ) as actor:
        entry = await service.add_note(
            db_session=db_session,
            author=user,
            incident_id=incident_id,
            text=body.text,
            now=now,
            audit_actor=actor,
        )
    return TimelineEntryOut.model_validate(entry)
