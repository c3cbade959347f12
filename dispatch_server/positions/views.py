"""REST for positions (R9): report one (or a batch kept while offline) without a websocket; the
command room reads everyone's newest and a person's track."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.views import actor_of
from dispatch_server.auth.deps import DbSession, Now, require_roles
from dispatch_server.ids import Id
from dispatch_server.paging import PageQuery, page_query
from dispatch_server.people.models import Person
from dispatch_server.people.schemas import UserOut
from dispatch_server.positions import service
from dispatch_server.positions.recorder import PositionRecorder
from dispatch_server.positions.schemas import (
    LatestPositionOut,
    LatestPositionPage,
    PositionBatchIn,
    PositionIn,
    PositionOut,
    PositionsAccepted,
    TrackPage,
)

router = APIRouter(prefix="/api", tags=["positions"])

Reporter = Annotated[Person, Depends(require_roles(*service.REPORT_ROLES))]
Reader = Annotated[Person, Depends(require_roles(*service.READ_ROLES))]


async def _accept(
    request: Request, db_session: DbSession, user: Person, now: Now, reports: list[PositionIn]
) -> PositionsAccepted:
    fixes, others = await service.fixes_for(
        db_session=db_session,
        reporter=user,
        reports=reports,
        now=now,
        limits=request.app.state.position_limits,
    )
    if others:  # positions entered for someone else are a change made by a person: audited
        await audit.record(
            db_session=db_session,
            action=AuditAction.POSITION_REPORT,
            outcome=Outcome.SUCCESS,
            actor=actor_of(user, request),
            object=",".join(f"person:{person_id}" for person_id in others)[:256],
            detail={"fixes": len(fixes), "for": others},
        )
        await db_session.commit()
    recorder: PositionRecorder = request.app.state.positions
    recorder.add(fixes)
    return PositionsAccepted(accepted=len(fixes))


@router.post(
    "/positions",
    response_model=PositionsAccepted,
    status_code=202,
    summary="Report a position (for clients without a websocket); stored within a second",
)
async def report(
    body: PositionIn, request: Request, now: Now, db_session: DbSession, user: Reporter
) -> PositionsAccepted:
    return await _accept(request, db_session, user, now, [body])


@router.post(
    "/positions/batch",
    response_model=PositionsAccepted,
    status_code=202,
    summary="Report positions kept while offline (all accepted, or none)",
)
async def report_batch(
    body: PositionBatchIn, request: Request, now: Now, db_session: DbSession, user: Reporter
) -> PositionsAccepted:
    return await _accept(request, db_session, user, now, body.positions)


@router.get(
    "/positions/latest",
    response_model=LatestPositionPage,
    summary="Each person's newest position, newest first, a page at a time",
)
async def latest(
    db_session: DbSession,
    _user: Reader,
    page: Annotated[PageQuery, Depends(page_query(default=200, maximum=1000))],
    incident_id: Annotated[Id | None, Query(description="Only the officers on this incident.")] = None,
    unit_id: Annotated[Id | None, Query(description="Only people of this unit or its sub-units.")] = None,
) -> LatestPositionPage:
    rows, total = await service.latest(
        db_session=db_session, incident_id=incident_id, unit_id=unit_id, limit=page.limit, offset=page.offset
    )
    items = [
        LatestPositionOut(
            **PositionOut.model_validate(last).model_dump(), person=UserOut.model_validate(person)
        )
        for last, person in rows
    ]
    return LatestPositionPage.of(items, total, page)


@router.get(
    "/people/{person_id}/track",
    response_model=TrackPage,
    summary="A person's positions in a time range, oldest first, a page at a time (audited)",
)
async def track(
    person_id: Id,
    request: Request,
    db_session: DbSession,
    user: Reader,
    page: Annotated[PageQuery, Depends(page_query(default=1000, maximum=5000))],
    since: Annotated[AwareDatetime | None, Query(description="From this time on (with its zone).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before this time (with its zone).")] = None,
) -> TrackPage:
    fixes, total = await service.track(
        db_session=db_session,
        person_id=person_id,
        since=since,
        until=until,
        limit=page.limit,
        offset=page.offset,
    )
    await audit.record(
        db_session=db_session,
        action=AuditAction.POSITION_TRACK,
        outcome=Outcome.SUCCESS,
        actor=actor_of(user, request),
        object=f"person:{person_id}",
        detail={
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "offset": page.offset,
            "returned": len(fixes),
        },
    )
    await db_session.commit()
    return TrackPage(
        person_id=person_id,
        items=[PositionOut.model_validate(fix) for fix in fixes],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )
