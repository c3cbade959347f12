"""Duty (R10): the posts, the roster, sign-in and sign-out, and what every duty change shares
(handovers: :mod:`dispatch_server.duty.handovers`; the duty log: :mod:`dispatch_server.duty.log`).

Every change takes the event log's lock first (:func:`hold`), reads what it checks (overlapping
shifts, open sign-ins, a pending handover), writes, audits (R17) and logs its ``duty`` event in
one transaction, which the function commits; the caller publishes the returned events. Taking the
lock before reading makes the checks hold with any number of dispatch processes: two requests
that would each create one of two overlapping shifts run one after the other, and the second sees
the first.

Who does what (the routes check roles; these functions check the rest):

- the roster is planned by commanders, leaders and admins (:data:`ROSTER_ROLES`); everyone who
  runs duty reads it;
- people sign themselves in and out, on posts their role may hold (``duty.posts[].roles``);
- a handover is written by someone signed in on the post, and accepted by the person it names
  (else by anyone else who may hold the post);
- the duty log is written by everyone who runs duty; entries are never changed, only corrected.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction
from dispatch_server.duty import calendar
from dispatch_server.duty.models import (
    Shift,
    SignIn,
)
from dispatch_server.duty.schemas import DutyChange
from dispatch_server.errors import Conflict, Forbidden, Invalid, NotFound
from dispatch_server.people import service as people
from dispatch_server.people.models import COMMAND_ROLES, WATCH_ROLES, Person
from dispatch_server.people.schemas import UserOut
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.bus import command_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import DutyMessage
from zhihui.settings import DutyPost, DutySettings

__all__ = [
    "DUTY_ROLES",
    "ROSTER_ROLES",
    "change_shift",
    "create_shift",
    "day_window",
    "delete_shift",
    "find_post",
    "get_shift",
    "holder",
    "list_shifts",
    "list_sign_ins",
    "sign_in",
    "sign_out",
    "signed_in",
]

DUTY_ROLES = WATCH_ROLES
"""Who runs duty: duty officers, commanders, leaders and admins. Field officers are in the field,
observers and external participants are outside the center."""
ROSTER_ROLES = COMMAND_ROLES
"""Who plans the roster: commanders, leaders and admins. Duty officers read it; they do not rewrite
who is accountable for a seat (their own shifts included)."""
MAX_SHIFT = timedelta(days=7)


# -- posts -----------------------------------------------------------------------------------------


def find_post(settings: DutySettings, key: str) -> DutyPost:
    """The post with this key; 422 for one the settings do not name."""
    for candidate in settings.posts:
        if candidate.key == key:
            return candidate
    known = ", ".join(p.key for p in settings.posts)
    raise Invalid(f"there is no duty post {key!r} (the posts are: {known})")


def _may_hold(seat: DutyPost, person: Person) -> bool:
    roles: set[str] = set(seat.roles) or {role.value for role in DUTY_ROLES}
    return person.role.value in roles


def check_may_hold(seat: DutyPost, person: Person) -> None:
    if not _may_hold(seat, person):
        allowed = ", ".join(seat.roles or sorted(role.value for role in DUTY_ROLES))
        raise Forbidden(
            f"{person.username} is a {person.role.value}: the {seat.key} post is held by {allowed}"
        )


# -- shared helpers --------------------------------------------------------------------------------


async def hold(db_session: AsyncSession) -> None:
    """Serialise this transaction with every other duty change (and event writer) before it reads
    what it checks. PostgreSQL: the event log's row lock. SQLite: its one write lock, taken by an
    UPDATE that changes nothing (a read before the first write would not wait for other writers)."""
    if db_session.get_bind().dialect.name == "sqlite":
        await db_session.execute(
            update(Shift).where(false()).values(note=Shift.note).execution_options(synchronize_session=False)
        )
    await eventlog.hold(db_session=db_session)


async def release(db_session: AsyncSession) -> None:
    """End a transaction that changed nothing (releasing :func:`hold`'s lock) and keep what it
    read: a commit, which does not expire the session's objects as a rollback would."""
    await db_session.commit()


def duty_event(
    change: DutyChange, summary: str, at: datetime, *, seat: str | None, person: Person | None, ref: int
) -> LoggedEvent:
    """A ``duty`` event for the command room, about the shift, sign-in, handover, open item or log
    entry ``ref`` (which one the change says)."""
    message = DutyMessage(
        change=change,
        post=seat,
        person=UserOut.model_validate(person) if person is not None else None,
        ref_id=ref,
        summary=summary,
        at=at,
    )
    return LoggedEvent(command_channel(), message, f"duty:{change.value}:{ref}")


async def finish(
    db_session: AsyncSession,
    *,
    actor: audit.Actor,
    action: AuditAction,
    object: str,
    detail: dict[str, Any],
    events: list[LoggedEvent],
) -> list[LoggedEvent]:
    await audit.record_success(db_session, actor, action, object, detail)
    logged = await eventlog.record(db_session=db_session, events=events)
    await db_session.commit()
    return logged


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# -- the roster ------------------------------------------------------------------------------------


async def get_shift(*, db_session: AsyncSession, shift_id: int) -> Shift:
    shift = await db_session.scalar(
        select(Shift).where(Shift.id == shift_id).execution_options(populate_existing=True)
    )
    if shift is None:
        raise NotFound(f"there is no shift {shift_id}")
    return shift


async def _check_shift(
    db_session: AsyncSession,
    settings: DutySettings,
    *,
    person_id: int,
    seat_key: str,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    exclude_id: int | None = None,
) -> Person:
    seat = find_post(settings, seat_key)
    if ends_at <= starts_at:
        raise Invalid("a shift ends after it starts")
    if ends_at - starts_at > MAX_SHIFT:
        raise Invalid(f"a shift lasts at most {MAX_SHIFT.days} days")
    if starts_at < now:
        raise Invalid("a shift is planned ahead: its start is in the past")
    person = await people.get(db_session=db_session, person_id=person_id)
    check_may_hold(seat, person)
    clash = select(Shift).where(
        Shift.person_id == person_id,
        Shift.post == seat_key,
        Shift.starts_at < ends_at,
        Shift.ends_at > starts_at,
    )
    if exclude_id is not None:
        clash = clash.where(Shift.id != exclude_id)
    other = await db_session.scalar(clash.order_by(Shift.starts_at).limit(1))
    if other is not None:
        raise Conflict(
            f"{person.username} is already on {seat_key} from {_iso(other.starts_at)} to "
            f"{_iso(other.ends_at)} (shift {other.id}): shifts of one person on one post may not overlap"
        )
    return person


async def create_shift(
    *,
    db_session: AsyncSession,
    settings: DutySettings,
    planner: Person,
    actor: audit.Actor,
    person_id: int,
    seat: str,
    starts_at: datetime,
    ends_at: datetime,
    note: str = "",
    now: datetime,
) -> tuple[Shift, list[LoggedEvent]]:
    await hold(db_session)
    person = await _check_shift(
        db_session,
        settings,
        person_id=person_id,
        seat_key=seat,
        starts_at=starts_at,
        ends_at=ends_at,
        now=now,
    )
    shift = Shift(
        person_id=person.id,
        post=seat,
        starts_at=starts_at,
        ends_at=ends_at,
        note=note.strip(),
        created_by_id=planner.id,
        created_at=now,
    )
    db_session.add(shift)
    await db_session.flush()
    shift_id = shift.id
    summary = f"{person.display_name} rostered on {seat} from {_iso(starts_at)} to {_iso(ends_at)}"
    events = await finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_SHIFT_CREATE,
        object=f"shift:{shift_id}",
        detail={"person_id": person.id, "post": seat, "starts_at": _iso(starts_at), "ends_at": _iso(ends_at)},
        events=[duty_event(DutyChange.SHIFT_CREATED, summary, now, seat=seat, person=person, ref=shift_id)],
    )
    return await get_shift(db_session=db_session, shift_id=shift_id), events


def _future(shift: Shift, now: datetime) -> None:
    if shift.starts_at <= now:
        raise Conflict(f"shift {shift.id} has started: only shifts still to come can be changed or removed")


async def change_shift(
    *,
    db_session: AsyncSession,
    settings: DutySettings,
    actor: audit.Actor,
    shift_id: int,
    changes: dict[str, Any],
    now: datetime,
) -> tuple[Shift, list[LoggedEvent]]:
    """Change a shift still to come (person, post, start, end, note)."""
    await hold(db_session)
    shift = await get_shift(db_session=db_session, shift_id=shift_id)
    _future(shift, now)
    wanted: dict[str, Any] = {
        "person_id": changes.get("person_id") or shift.person_id,
        "post": changes.get("post") or shift.post,
        "starts_at": changes.get("starts_at") or shift.starts_at,
        "ends_at": changes.get("ends_at") or shift.ends_at,
    }
    person = await _check_shift(
        db_session,
        settings,
        person_id=wanted["person_id"],
        seat_key=wanted["post"],
        starts_at=wanted["starts_at"],
        ends_at=wanted["ends_at"],
        now=now,
        exclude_id=shift.id,
    )
    before = {
        "person_id": shift.person_id,
        "post": shift.post,
        "starts_at": shift.starts_at,
        "ends_at": shift.ends_at,
    }
    for field, value in wanted.items():
        setattr(shift, field, value)
    if changes.get("note") is not None:
        shift.note = changes["note"].strip()
    changed = {k: [_plain(before[k]), _plain(v)] for k, v in wanted.items() if before[k] != v}
    summary = f"shift {shift.id} changed: {person.display_name} on {shift.post} from {_iso(shift.starts_at)}"
    events = await finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_SHIFT_CHANGE,
        object=f"shift:{shift.id}",
        detail={"changed": changed, "note": shift.note},
        events=[
            duty_event(DutyChange.SHIFT_CHANGED, summary, now, seat=shift.post, person=person, ref=shift.id)
        ],
    )
    return await get_shift(db_session=db_session, shift_id=shift_id), events


def _plain(value: Any) -> Any:
    return _iso(value) if isinstance(value, datetime) else value


async def delete_shift(
    *, db_session: AsyncSession, actor: audit.Actor, shift_id: int, now: datetime
) -> list[LoggedEvent]:
    await hold(db_session)
    shift = await get_shift(db_session=db_session, shift_id=shift_id)
    _future(shift, now)
    person, seat = shift.person, shift.post
    detail = {
        "person_id": person.id,
        "post": seat,
        "starts_at": _iso(shift.starts_at),
        "ends_at": _iso(shift.ends_at),
    }
    await db_session.delete(shift)
    summary = f"{person.display_name}'s shift {shift_id} on {seat} removed"
    return await finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_SHIFT_DELETE,
        object=f"shift:{shift_id}",
        detail=detail,
        events=[duty_event(DutyChange.SHIFT_DELETED, summary, now, seat=seat, person=person, ref=shift_id)],
    )


async def list_shifts(
    *,
    db_session: AsyncSession,
    since: datetime | None = None,
    until: datetime | None = None,
    person_id: int | None = None,
    seat: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Shift], int]:
    """Shifts overlapping ``[since, until)``, by start; and how many match in all."""
    query = select(Shift)
    if since is not None:
        query = query.where(Shift.ends_at > since)
    if until is not None:
        query = query.where(Shift.starts_at < until)
    if person_id is not None:
        query = query.where(Shift.person_id == person_id)
    if seat is not None:
        query = query.where(Shift.post == seat)
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(Shift.starts_at, Shift.post, Shift.id).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).all()), total


def _current_shifts(person_id: int, now: datetime, early: timedelta) -> Select[Shift]:
    """The person's shifts that a sign-in at ``now`` counts for, soonest first."""
    return (
        select(Shift)
        .where(Shift.person_id == person_id, Shift.starts_at <= now + early, Shift.ends_at > now)
        .order_by(Shift.starts_at, Shift.id)
    )


# -- sign-in and sign-out --------------------------------------------------------------------------


async def _get_sign_in(db_session: AsyncSession, sign_in_id: int) -> SignIn:
    query = select(SignIn).where(SignIn.id == sign_in_id).execution_options(populate_existing=True)
    return (await db_session.scalars(query)).one()


async def open_sign_in(db_session: AsyncSession, person_id: int, seat: str) -> SignIn | None:
    query = select(SignIn).where(
        SignIn.person_id == person_id, SignIn.post == seat, SignIn.signed_out_at.is_(None)
    )
    return await db_session.scalar(query.execution_options(populate_existing=True))


async def sign_in(
    *,
    db_session: AsyncSession,
    settings: DutySettings,
    person: Person,
    actor: audit.Actor,
    seat: str | None,
    now: datetime,
) -> tuple[SignIn, list[LoggedEvent]]:
    """Sign ``person`` in on a post (by default, that of their current or coming shift). Signing
    in again while signed in returns the sign-in as it stands. A sign-in more than
    ``late_after_seconds`` after the shift's start is late; one without a shift is kept and marked
    unscheduled. Filling a required post resolves its empty-seat alert."""
    early = timedelta(seconds=settings.early_sign_in_seconds)
    if seat is None:
        current = (await db_session.scalars(_current_shifts(person.id, now, early).limit(1))).first()
        if current is None:
            raise Invalid("you have no shift now: name the post to sign in on")
        seat = current.post
    chosen = find_post(settings, seat)
    check_may_hold(chosen, person)
    await hold(db_session)
    existing = await open_sign_in(db_session, person.id, seat)
    if existing is not None:
        await release(db_session)
        return existing, []
    shift = (
        await db_session.scalars(_current_shifts(person.id, now, early).where(Shift.post == seat).limit(1))
    ).first()
    late_seconds = max(0, int((now - shift.starts_at).total_seconds())) if shift is not None else 0
    record = SignIn(
        person_id=person.id,
        post=seat,
        shift_id=shift.id if shift is not None else None,
        signed_in_at=now,
        late_seconds=late_seconds,
        late=shift is not None and late_seconds > settings.late_after_seconds,
        left_early=False,
    )
    db_session.add(record)
    try:
        await db_session.flush()
    except IntegrityError:  # signed in meanwhile (the unique index over open sign-ins)
        await db_session.rollback()
        again = await open_sign_in(db_session, person.id, seat)
        if again is None:
            raise
        return again, []
    record_id = record.id
    if shift is None:
        how = "without a shift"
    elif record.late:
        how = f"late, {late_seconds // 60} min after the shift began"
    else:
        how = "on time"
    events = [
        duty_event(
            DutyChange.SIGNED_IN,
            f"{person.display_name} signed in on {seat} ({how})",
            now,
            seat=seat,
            person=person,
            ref=record_id,
        )
    ]
    events.extend(await _fill_seat(db_session, seat=seat, now=now, note=f"{person.display_name} signed in"))
    logged = await finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_SIGN_IN,
        object=f"post:{seat}",
        detail={
            "sign_in_id": record_id,
            "shift_id": record.shift_id,
            "late": record.late,
            "late_seconds": late_seconds,
            "unscheduled": shift is None,
        },
        events=events,
    )
    return await _get_sign_in(db_session, record_id), logged


async def _fill_seat(db_session: AsyncSession, *, seat: str, now: datetime, note: str) -> list[LoggedEvent]:
    """The post is manned again: resolve its empty-seat alert, if one is open (already logged)."""
    from dispatch_server.duty import rules

    return await rules.seat_filled(db_session=db_session, seat=seat, now=now, note=note)


async def sign_out(
    *,
    db_session: AsyncSession,
    person: Person,
    actor: audit.Actor,
    seat: str | None,
    now: datetime,
) -> tuple[SignIn, list[LoggedEvent]]:
    """Sign ``person`` out (of ``seat``, or of the one post they are signed in on). Signing out
    again returns the last sign-in as it stands; never having signed in is a 409."""
    await hold(db_session)
    query = select(SignIn).where(SignIn.person_id == person.id, SignIn.signed_out_at.is_(None))
    if seat is not None:
        query = query.where(SignIn.post == seat)
    open_ones = list((await db_session.scalars(query)).all())
    if len(open_ones) > 1:
        posts = ", ".join(sorted(s.post for s in open_ones))
        raise Invalid(f"you are signed in on {posts}: name the post to sign out of")
    if not open_ones:
        last = select(SignIn).where(SignIn.person_id == person.id)
        if seat is not None:
            last = last.where(SignIn.post == seat)
        done = await db_session.scalar(last.order_by(SignIn.signed_in_at.desc(), SignIn.id.desc()).limit(1))
        await release(db_session)
        if done is None:
            raise Conflict(f"you are not signed in{f' on {seat}' if seat else ''}")
        return done, []
    record = open_ones[0]
    record.signed_out_at = now
    record.left_early = record.shift is not None and now < record.shift.ends_at
    record_id, seat = record.id, record.post
    how = " before the end of the shift" if record.left_early else ""
    logged = await finish(
        db_session,
        actor=actor,
        action=AuditAction.DUTY_SIGN_OUT,
        object=f"post:{seat}",
        detail={"sign_in_id": record_id, "left_early": record.left_early},
        events=[
            duty_event(
                DutyChange.SIGNED_OUT,
                f"{person.display_name} signed out of {seat}{how}",
                now,
                seat=seat,
                person=person,
                ref=record_id,
            )
        ],
    )
    return await _get_sign_in(db_session, record_id), logged


async def signed_in(*, db_session: AsyncSession, seat: str | None = None) -> list[SignIn]:
    """Who is signed in now (on one post, or on any), earliest first."""
    query = select(SignIn).where(SignIn.signed_out_at.is_(None))
    if seat is not None:
        query = query.where(SignIn.post == seat)
    return list((await db_session.scalars(query.order_by(SignIn.signed_in_at, SignIn.id))).all())


async def list_sign_ins(
    *,
    db_session: AsyncSession,
    since: datetime | None = None,
    until: datetime | None = None,
    person_id: int | None = None,
    seat: str | None = None,
    open_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[SignIn]:
    """Sign-ins that were open at some time in ``[since, until)``, earliest first."""
    query = select(SignIn)
    if since is not None:
        query = query.where(or_(SignIn.signed_out_at.is_(None), SignIn.signed_out_at > since))
    if until is not None:
        query = query.where(SignIn.signed_in_at < until)
    if person_id is not None:
        query = query.where(SignIn.person_id == person_id)
    if seat is not None:
        query = query.where(SignIn.post == seat)
    if open_only:
        query = query.where(SignIn.signed_out_at.is_(None))
    page = query.order_by(SignIn.signed_in_at, SignIn.id).limit(limit).offset(offset)
    return list((await db_session.scalars(page)).all())


async def holder(*, db_session: AsyncSession, seat: str, now: datetime) -> Person | None:
    """Who holds the post at ``now``: the first of those signed in on it, else the person rostered
    on it then (the shift that began last), else None."""
    signed = await signed_in(db_session=db_session, seat=seat)
    if signed:
        return signed[0].person
    rostered = await db_session.scalar(
        select(Shift)
        .where(Shift.post == seat, Shift.starts_at <= now, Shift.ends_at > now)
        .order_by(Shift.starts_at.desc(), Shift.id.desc())
        .limit(1)
    )
    return rostered.person if rostered is not None else None


def day_window(
    settings: DutySettings, day: date | None, week: date | None
) -> tuple[datetime | None, datetime | None]:
    """The UTC bounds of a local day or of the week holding a date (none: no bounds)."""
    if day is not None and week is not None:
        raise Invalid("give a day or a week, not both")
    if day is not None:
        return calendar.day_bounds(settings, day)
    if week is not None:
        return calendar.week_bounds(settings, week)
    return None, None
