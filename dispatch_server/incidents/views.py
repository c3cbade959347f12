from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from dispatch_server.auth.deps import DbSession, Now, require_roles
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
from dispatch_server.people.models import COMMAND_ROLES, Person
from dispatch_server.people.schemas import UserOut

router = APIRouter(prefix="/api/incidents", tags=["incidents"])

Reader = Annotated[Person, Depends(require_roles(*service.READ_ROLES))]
Manager = Annotated[Person, Depends(require_roles(*service.MANAGE_ROLES))]
Commander = Annotated[Person, Depends(require_roles(*COMMAND_ROLES))]
NoteTaker = Annotated[Person, Depends(require_roles(*service.NOTE_ROLES))]


@router.post("", response_model=IncidentOut, status_code=201, summary="Open an incident")
async def open_incident(body: IncidentIn, now: Now, db_session: DbSession, user: Manager) -> IncidentOut:
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
    )
    return IncidentOut.model_validate(incident)


@router.get("", response_model=IncidentPage, summary="Incidents I may see, newest first, a page at a time")
async def list_incidents(
    db_session: DbSession,
    user: Reader,
    status: IncidentStatus | None = None,
    kind: IncidentKind | None = None,
    case_number: Annotated[str | None, Query(max_length=64)] = None,
    officer_id: Annotated[Id | None, Query(description="Only incidents this officer is on.")] = None,
    q: Annotated[str | None, Query(max_length=100, description="Words in the title or place.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[Count, Query()] = 0,
) -> IncidentPage:
    items, total = await service.list_visible(
        db_session=db_session,
        person=user,
        status=status,
        kind=kind,
        case_number=case_number,
        officer_id=officer_id,
        text=q,
        limit=limit,
        offset=offset,
    )
    return IncidentPage(
        items=[IncidentOut.model_validate(i) for i in items], total=total, limit=limit, offset=offset
    )


@router.get("/{incident_id}", response_model=IncidentOut, summary="One incident")
async def get_incident(incident_id: Id, db_session: DbSession, user: Reader) -> IncidentOut:
    return IncidentOut.model_validate(
        await service.get_visible(db_session=db_session, person=user, incident_id=incident_id)
    )


@router.patch("/{incident_id}", response_model=IncidentOut, summary="Change, close or reopen an incident")
async def update_incident(
    incident_id: Id, body: IncidentPatch, now: Now, db_session: DbSession, user: Manager
) -> IncidentOut:
    incident = await service.update(
        db_session=db_session,
        actor=user,
        incident_id=incident_id,
        changes=body.model_dump(exclude_unset=True),
        now=now,
    )
    return IncidentOut.model_validate(incident)


@router.post("/{incident_id}/officers", response_model=IncidentOut, summary="Put officers on an incident")
async def assign_officers(
    incident_id: Id, body: PeopleIn, now: Now, db_session: DbSession, user: Manager
) -> IncidentOut:
    incident = await service.assign(
        db_session=db_session,
        actor=user,
        incident_id=incident_id,
        person_ids=body.person_ids,
        now=now,
    )
    return IncidentOut.model_validate(incident)


@router.delete(
    "/{incident_id}/officers/{person_id}", response_model=IncidentOut, summary="Take an officer off"
)
async def unassign_officer(
    incident_id: Id, person_id: Id, now: Now, db_session: DbSession, user: Manager
) -> IncidentOut:
    incident = await service.unassign(
        db_session=db_session,
        actor=user,
        incident_id=incident_id,
        person_id=person_id,
        now=now,
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
    incident_id: Id, body: PeopleIn, now: Now, db_session: DbSession, user: Commander
) -> list[UserOut]:
    shared = await service.share(
        db_session=db_session,
        actor=user,
        incident_id=incident_id,
        person_ids=body.person_ids,
        now=now,
    )
    return [UserOut.model_validate(p) for p in shared]


@router.delete("/{incident_id}/shares/{person_id}", status_code=204, summary="Stop sharing")
async def unshare_incident(
    incident_id: Id, person_id: Id, now: Now, db_session: DbSession, user: Commander
) -> Response:
    await service.unshare(
        db_session=db_session,
        actor=user,
        incident_id=incident_id,
        person_id=person_id,
        now=now,
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
    incident_id: Id, body: NoteIn, now: Now, db_session: DbSession, user: NoteTaker
) -> TimelineEntryOut:
    entry = await service.add_note(
        db_session=db_session, author=user, incident_id=incident_id, text=body.text, now=now
    )
    return TimelineEntryOut.model_validate(entry)
