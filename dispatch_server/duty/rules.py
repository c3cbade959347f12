"""The empty-seat rule (R10, 上班时间一律有人在岗): during working hours, a required post with nobody
signed in on it for ``duty.empty_seat_grace_seconds`` raises an ``empty_seat`` alert (subject
``seat:<post>``); it resolves when someone signs in (at once, in the sign-in's transaction), when
working hours end (lunch, the evening), or when the post is no longer required.

The check reads everything from SQL and keeps nothing of its own, like every rule of the
:class:`~dispatch_server.alerts.rules.RuleRunner`: any number of dispatch processes may run it,
and the open-alert unique index keeps one alert per seat.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.alerts import service as alerts
from dispatch_server.alerts.models import AlertKind, AlertLevel
from dispatch_server.duty import calendar
from dispatch_server.duty.models import SignIn
from dispatch_server.realtime import eventlog
from dispatch_server.realtime.eventlog import LoggedEvent
from zhihui.settings import DutyPost, DutySettings

__all__ = ["SUBJECT_PREFIX", "EmptySeatCheck", "seat_filled", "subject"]

SUBJECT_PREFIX = "seat:"


def subject(post: str) -> str:
    """The alert subject of a post's empty seat."""
    return f"{SUBJECT_PREFIX}{post}"


async def seat_filled(*, db_session: AsyncSession, seat: str, now: datetime, note: str) -> list[LoggedEvent]:
    """Someone signed in on the post: resolve its empty-seat alert, if one is open (in the caller's
    transaction; the events are logged)."""
    return await alerts.resolve_open(
        db_session=db_session, kind=AlertKind.EMPTY_SEAT, subject=subject(seat), now=now, note=note
    )


async def _manned(db_session: AsyncSession, post: str) -> bool:
    query = select(SignIn.id).where(SignIn.post == post, SignIn.signed_out_at.is_(None)).limit(1)
    return await db_session.scalar(query) is not None


async def _empty_since(db_session: AsyncSession, post: str, period_start: datetime) -> datetime:
    """Since when nobody has been on the post in this working period."""
    last_out = await db_session.scalar(select(func.max(SignIn.signed_out_at)).where(SignIn.post == post))
    return max(period_start, last_out) if last_out is not None else period_start


class EmptySeatCheck:
    """``check(db_session, now)`` for the rule runner."""

    name = "empty_seat"

    def __init__(self, settings: DutySettings) -> None:
        self._settings = settings
        self._grace = timedelta(seconds=settings.empty_seat_grace_seconds)

    async def __call__(self, db_session: AsyncSession, now: datetime) -> list[LoggedEvent]:
        period = calendar.period_at(self._settings, now)
        open_now = {
            subj
            for _kind, subj in await alerts.open_subjects(
                db_session=db_session, kinds=[AlertKind.EMPTY_SEAT], prefix=SUBJECT_PREFIX
            )
        }
        events: list[LoggedEvent] = []
        known = {subject(post.key) for post in self._settings.posts}
        for stale in sorted(open_now - known):  # a post taken out of the settings
            events += await alerts.resolve_open(
                db_session=db_session,
                kind=AlertKind.EMPTY_SEAT,
                subject=stale,
                now=now,
                note="no such post any more",
            )
        for post in self._settings.posts:
            events += await self._check_post(db_session, post, period, subject(post.key) in open_now, now)
        return events

    async def _check_post(
        self,
        db_session: AsyncSession,
        post: DutyPost,
        period: calendar.Period | None,
        is_open: bool,
        now: datetime,
    ) -> list[LoggedEvent]:
        subj = subject(post.key)
        if period is None or not post.required:
            if not is_open:
                return []
            note = "working hours are over" if period is None else "the post no longer has to be manned"
            return await alerts.resolve_open(
                db_session=db_session, kind=AlertKind.EMPTY_SEAT, subject=subj, now=now, note=note
            )
        if await _manned(db_session, post.key):
            if not is_open:
                return []
            return await alerts.resolve_open(
                db_session=db_session,
                kind=AlertKind.EMPTY_SEAT,
                subject=subj,
                now=now,
                note="someone signed in",
            )
        if is_open:
            return []
        empty_since = await _empty_since(db_session, post.key, period.starts_at)
        if now - empty_since < self._grace:
            return []
        # Look again under the event log's lock: a sign-in that committed meanwhile has resolved
        # nothing yet (there was nothing open), so raising now would leave a filled seat alerted.
        await eventlog.hold(db_session=db_session)
        if await _manned(db_session, post.key):
            return []
        local = empty_since.astimezone(calendar.zone(self._settings)).strftime("%H:%M")
        return await alerts.raise_alert(
            db_session=db_session,
            kind=AlertKind.EMPTY_SEAT,
            subject=subj,
            message=f"Nobody is on duty at {post.name} (empty since {local}) 值班岗位无人在岗",
            level=AlertLevel.WARNING,
            now=now,
        )
