"""Duty (R10): the roster, sign-in, handovers, open items, the duty log, and the duty page."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse

from dispatch_server.audit.views import actor_of
from dispatch_server.auth.deps import Ctx, DbSession, Now, require_roles
from dispatch_server.duty import calendar, handovers, service
from dispatch_server.duty import log as duty_log
from dispatch_server.duty.models import LogKind
from dispatch_server.duty.schemas import (
    BoardOut,
    CloseIn,
    HandoverIn,
    HandoverOut,
    ItemOut,
    LogEntryIn,
    LogEntryOut,
    LogPage,
    PeriodOut,
    PostBoard,
    PostOut,
    ShiftIn,
    ShiftOut,
    ShiftPage,
    ShiftPatch,
    SignInIn,
    SignInOut,
)
from dispatch_server.ids import Id
from dispatch_server.paging import LongPaging, Paging
from dispatch_server.people.models import Person
from dispatch_server.people.schemas import UserOut
from dispatch_server.realtime import eventlog
from dispatch_server.web.views import STATIC_DIR
from zhihui.settings import DutySettings

router = APIRouter(tags=["duty"])

Runner = Annotated[Person, Depends(require_roles(*service.DUTY_ROLES))]
"""Duty officers, commanders, leaders and admins."""
Planner = Annotated[Person, Depends(require_roles(*service.ROSTER_ROLES))]
"""Commanders, leaders and admins."""
Day = Annotated[date | None, Query(description="A day in the court's time zone (YYYY-MM-DD).")]
POST_QUERY = Query(max_length=48, description="A post key.")


def _duty(context: Ctx) -> DutySettings:
    return context.settings.duty


def _day_bounds(context: Ctx, day: Day = None) -> tuple[datetime | None, datetime | None]:
    """The UTC bounds of the local day asked for (none asked: no bounds)."""
    return service.day_window(_duty(context), day, None)


DayBounds = Annotated[tuple[datetime | None, datetime | None], Depends(_day_bounds)]
"""The ``day`` a list is filtered to, as bounds."""


def _post_out(settings: DutySettings) -> list[PostOut]:
    return [PostOut(key=p.key, name=p.name, required=p.required, roles=list(p.roles)) for p in settings.posts]


@router.get("/duty", include_in_schema=False)
async def duty_page() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "duty.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


@router.get("/api/duty/posts", response_model=list[PostOut], summary="The posts of the duty roster")
async def list_posts(context: Ctx, _user: Runner) -> list[PostOut]:
    return _post_out(_duty(context))


@router.get("/api/duty/board", response_model=BoardOut, summary="A day of duty: roster and who is signed in")
async def board(context: Ctx, now: Now, db_session: DbSession, _user: Runner, day: Day = None) -> BoardOut:
    settings = _duty(context)
    day = day or calendar.local_day(settings, now)
    since, until = calendar.day_bounds(settings, day)
    shifts, _ = await service.list_shifts(db_session=db_session, since=since, until=until, limit=1000)
    present = await service.signed_in(db_session=db_session)
    posts = []
    for post in _post_out(settings):
        holder = await service.holder(db_session=db_session, seat=post.key, now=now)
        posts.append(
            PostBoard(
                **post.model_dump(),
                shifts=[ShiftOut.model_validate(s) for s in shifts if s.post == post.key],
                signed_in=[SignInOut.model_validate(s) for s in present if s.post == post.key],
                holder=UserOut.model_validate(holder) if holder is not None else None,
            )
        )
    return BoardOut(
        day=day,
        time_zone=settings.time_zone,
        now=now,
        working_now=calendar.period_at(settings, now) is not None,
        periods=[
            PeriodOut(starts_at=p.starts_at, ends_at=p.ends_at) for p in calendar.periods_of(settings, day)
        ],
        posts=posts,
    )


# -- the roster ------------------------------------------------------------------------------------


@router.get("/api/duty/shifts", response_model=ShiftPage, summary="The roster, by day or week, person, post")
async def list_shifts(
    context: Ctx,
    db_session: DbSession,
    _user: Runner,
    page: LongPaging,
    day: Day = None,
    week: Annotated[date | None, Query(description="Any day of the week (Monday to Sunday) wanted.")] = None,
    from_: Annotated[datetime | None, Query(alias="from", description="Shifts ending after this.")] = None,
    to: Annotated[datetime | None, Query(description="Shifts starting before this.")] = None,
    person_id: Id | None = None,
    post: Annotated[str | None, POST_QUERY] = None,
) -> ShiftPage:
    since, until = service.day_window(_duty(context), day, week)
    since = max(filter(None, (since, from_)), default=None)
    until = min(filter(None, (until, to)), default=None)
    items, total = await service.list_shifts(
        db_session=db_session,
        since=since,
        until=until,
        person_id=person_id,
        seat=post,
        limit=page.limit,
        offset=page.offset,
    )
    return ShiftPage.of([ShiftOut.model_validate(s) for s in items], total, page)


@router.post("/api/duty/shifts", response_model=ShiftOut, status_code=201, summary="Roster someone on a post")
async def create_shift(
    body: ShiftIn, request: Request, context: Ctx, now: Now, db_session: DbSession, user: Planner
) -> ShiftOut:
    shift, events = await service.create_shift(
        db_session=db_session,
        settings=_duty(context),
        planner=user,
        actor=actor_of(user, request),
        person_id=body.person_id,
        seat=body.post,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        note=body.note,
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return ShiftOut.model_validate(shift)


@router.get("/api/duty/shifts/{shift_id}", response_model=ShiftOut, summary="One shift")
async def get_shift(shift_id: Id, db_session: DbSession, _user: Runner) -> ShiftOut:
    return ShiftOut.model_validate(await service.get_shift(db_session=db_session, shift_id=shift_id))


@router.patch("/api/duty/shifts/{shift_id}", response_model=ShiftOut, summary="Change a shift still to come")
async def change_shift(
    shift_id: Id,
    body: ShiftPatch,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Planner,
) -> ShiftOut:
    shift, events = await service.change_shift(
        db_session=db_session,
        settings=_duty(context),
        actor=actor_of(user, request),
        shift_id=shift_id,
        changes=body.model_dump(exclude_unset=True),
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return ShiftOut.model_validate(shift)


@router.delete("/api/duty/shifts/{shift_id}", status_code=204, summary="Remove a shift still to come")
async def delete_shift(
    shift_id: Id, request: Request, context: Ctx, now: Now, db_session: DbSession, user: Planner
) -> Response:
    events = await service.delete_shift(
        db_session=db_session, actor=actor_of(user, request), shift_id=shift_id, now=now
    )
    await eventlog.publish(bus=context.bus, events=events)
    return Response(status_code=204)


# -- sign-in ---------------------------------------------------------------------------------------


@router.post("/api/duty/sign-in", response_model=SignInOut, summary="Sign in on duty (idempotent)")
async def sign_in(
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Runner,
    body: SignInIn | None = None,
) -> SignInOut:
    record, events = await service.sign_in(
        db_session=db_session,
        settings=_duty(context),
        person=user,
        actor=actor_of(user, request),
        seat=body.post if body is not None else None,
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return SignInOut.model_validate(record)


@router.post("/api/duty/sign-out", response_model=SignInOut, summary="Sign out of duty (idempotent)")
async def sign_out(
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Runner,
    body: SignInIn | None = None,
) -> SignInOut:
    record, events = await service.sign_out(
        db_session=db_session,
        person=user,
        actor=actor_of(user, request),
        seat=body.post if body is not None else None,
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return SignInOut.model_validate(record)


@router.get("/api/duty/sign-ins", response_model=list[SignInOut], summary="Sign-ins, by day, person, post")
async def list_sign_ins(
    db_session: DbSession,
    _user: Runner,
    page: LongPaging,
    window: DayBounds,
    person_id: Id | None = None,
    post: Annotated[str | None, POST_QUERY] = None,
    open: Annotated[bool, Query(description="Only those still signed in.")] = False,
) -> list[SignInOut]:
    since, until = window
    rows = await service.list_sign_ins(
        db_session=db_session,
        since=since,
        until=until,
        person_id=person_id,
        seat=post,
        open_only=open,
        limit=page.limit,
        offset=page.offset,
    )
    return [SignInOut.model_validate(row) for row in rows]


# -- handovers and open items ----------------------------------------------------------------------


@router.post("/api/duty/handovers", response_model=HandoverOut, status_code=201, summary="Hand a post over")
async def write_handover(
    body: HandoverIn, request: Request, context: Ctx, now: Now, db_session: DbSession, user: Runner
) -> HandoverOut:
    handover, events = await handovers.write_handover(
        db_session=db_session,
        settings=_duty(context),
        writer=user,
        actor=actor_of(user, request),
        seat=body.post,
        notes=body.notes,
        to_person_id=body.to_person_id,
        items=[item.model_dump() for item in body.items],
        close_item_ids=body.close_item_ids,
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return HandoverOut.model_validate(handover)


@router.get("/api/duty/handovers", response_model=list[HandoverOut], summary="Handovers, newest first")
async def list_handovers(
    db_session: DbSession,
    _user: Runner,
    page: Paging,
    window: DayBounds,
    post: Annotated[str | None, POST_QUERY] = None,
    pending: Annotated[bool | None, Query(description="true: not accepted yet; false: accepted.")] = None,
) -> list[HandoverOut]:
    since, until = window
    rows = await handovers.list_handovers(
        db_session=db_session,
        seat=post,
        pending=pending,
        since=since,
        until=until,
        limit=page.limit,
        offset=page.offset,
    )
    return [HandoverOut.model_validate(row) for row in rows]


@router.get("/api/duty/handovers/{handover_id}", response_model=HandoverOut, summary="One handover")
async def get_handover(handover_id: Id, db_session: DbSession, _user: Runner) -> HandoverOut:
    return HandoverOut.model_validate(
        await handovers.get_handover(db_session=db_session, handover_id=handover_id)
    )


@router.post(
    "/api/duty/handovers/{handover_id}/accept", response_model=HandoverOut, summary="Take over (idempotent)"
)
async def accept_handover(
    handover_id: Id, request: Request, context: Ctx, now: Now, db_session: DbSession, user: Runner
) -> HandoverOut:
    handover, events = await handovers.accept_handover(
        db_session=db_session,
        settings=_duty(context),
        person=user,
        actor=actor_of(user, request),
        handover_id=handover_id,
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return HandoverOut.model_validate(handover)


@router.get("/api/duty/items", response_model=list[ItemOut], summary="Open items carried from shift to shift")
async def list_items(
    db_session: DbSession,
    _user: Runner,
    page: LongPaging,
    post: Annotated[str | None, POST_QUERY] = None,
    open: Annotated[bool, Query(description="false: closed ones too.")] = True,
) -> list[ItemOut]:
    rows = await handovers.list_items(
        db_session=db_session, seat=post, open_only=open, limit=page.limit, offset=page.offset
    )
    return [ItemOut.model_validate(row) for row in rows]


@router.post(
    "/api/duty/items/{item_id}/close", response_model=ItemOut, summary="Close an open item (idempotent)"
)
async def close_item(
    item_id: Id,
    request: Request,
    context: Ctx,
    now: Now,
    db_session: DbSession,
    user: Runner,
    body: CloseIn | None = None,
) -> ItemOut:
    item, events = await handovers.close_item(
        db_session=db_session,
        person=user,
        actor=actor_of(user, request),
        item_id=item_id,
        note=body.note if body is not None else "",
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return ItemOut.model_validate(item)


# -- the duty log ----------------------------------------------------------------------------------


@router.get("/api/duty/log", response_model=LogPage, summary="The duty log, in time order; search it")
async def list_log(
    db_session: DbSession,
    _user: Runner,
    page: LongPaging,
    window: DayBounds,
    q: Annotated[str | None, Query(max_length=100, description="Words in the entry.")] = None,
    kind: LogKind | None = None,
    author_id: Id | None = None,
) -> LogPage:
    since, until = window
    rows, total = await duty_log.list_log(
        db_session=db_session,
        since=since,
        until=until,
        kind=kind,
        author_id=author_id,
        text=q.strip() if q else None,
        limit=page.limit,
        offset=page.offset,
    )
    items = [
        LogEntryOut.model_validate(entry).model_copy(update={"corrected_by_id": corrected_by})
        for entry, corrected_by in rows
    ]
    return LogPage.of(items, total, page)


@router.post("/api/duty/log", response_model=LogEntryOut, status_code=201, summary="Write in the duty log")
async def add_log_entry(
    body: LogEntryIn, request: Request, context: Ctx, now: Now, db_session: DbSession, user: Runner
) -> LogEntryOut:
    entry, events = await duty_log.add_log_entry(
        db_session=db_session,
        author=user,
        actor=actor_of(user, request),
        kind=body.kind,
        text=body.text,
        corrects_id=body.corrects_id,
        now=now,
    )
    await eventlog.publish(bus=context.bus, events=events)
    return LogEntryOut.model_validate(entry)
