"""Positions (R9): which fixes are accepted, who may report whose, and reading them back.

A fix is accepted when its fields are in range (the schema) and its device time is plausible: not
more than ``max_future`` ahead of the server's clock (a device whose clock runs a little fast is
normal, one a day ahead is broken) and not older than ``max_age`` (a device that was offline sends
what it kept when it is back, within reason). Accepted fixes go to the
:class:`~dispatch_server.positions.recorder.PositionRecorder`, which stores them within a second.

Field officers report their own position. The command room may enter one for someone (a position
radioed in); that is audited, an officer's own reports are not (they are telemetry, thousands a
second, and the track itself is their record). Reading a person's track is audited: it is where
someone was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.errors import Forbidden, Invalid, NotFound
from dispatch_server.incidents.models import Assignment, Incident
from dispatch_server.people import service as people
from dispatch_server.people.models import WATCH_ROLES, Person, Role
from dispatch_server.positions.models import LastPosition, PositionFix
from dispatch_server.positions.recorder import Fix
from dispatch_server.positions.schemas import PositionIn, PositionReport
from dispatch_server.units import service as units

__all__ = [
    "READ_ROLES",
    "REPORT_ROLES",
    "Limits",
    "fixes_for",
    "latest",
    "own_fixes",
    "track",
]

REPORT_ROLES = frozenset({Role.FIELD_OFFICER, *WATCH_ROLES})
"""Who may report positions: officers their own, the command room also someone else's."""
READ_ROLES = WATCH_ROLES
"""Who sees positions: the command room."""


@dataclass(frozen=True)
class Limits:
    """How far a fix's device time may be from the server's."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(hours=72)


def _fix(person_id: int, report: PositionReport, now: datetime, limits: Limits, where: str) -> Fix:
    if report.at > now + limits.max_future:
        ahead = (report.at - now).total_seconds()
        raise Invalid(
            f"{where}at is {ahead:.0f} s ahead of the server's clock (at most "
            f"{limits.max_future.total_seconds():.0f} s): check the device's time"
        )
    if report.at < now - limits.max_age:
        raise Invalid(
            f"{where}at is older than {limits.max_age.total_seconds() / 3600:g} hours: too old to accept"
        )
    return Fix(
        person_id=person_id,
        at=report.at,
        received_at=now,
        latitude=report.latitude,
        longitude=report.longitude,
        accuracy_m=report.accuracy_m,
        heading_deg=report.heading_deg,
        speed_mps=report.speed_mps,
    )


def own_fixes(
    *, reporter: Person, reports: Sequence[PositionReport], now: datetime, limits: Limits
) -> list[Fix]:
    """The reporter's own fixes (the websocket's path: no database read per fix)."""
    if reporter.role not in REPORT_ROLES:
        raise Forbidden(f"a {reporter.role.value} does not report positions")
    return [_fix(reporter.id, report, now, limits, "") for report in reports]


async def fixes_for(
    *,
    db_session: AsyncSession,
    reporter: Person,
    reports: Sequence[PositionIn],
    now: datetime,
    limits: Limits,
) -> tuple[list[Fix], list[int]]:
    """The fixes of ``reports`` (all or none) and the people other than the reporter they are for."""
    if reporter.role not in REPORT_ROLES:
        raise Forbidden(f"a {reporter.role.value} does not report positions")
    others = sorted({r.person_id for r in reports if r.person_id is not None and r.person_id != reporter.id})
    if others and reporter.role not in WATCH_ROLES:
        raise Forbidden("a field officer may only report its own position")
    for person_id in others:
        try:
            await people.get(db_session=db_session, person_id=person_id)
        except NotFound:
            raise Invalid(f"person_id {person_id}: there is no such person") from None
    many = len(reports) > 1
    fixes = [
        _fix(
            reporter.id if report.person_id is None else report.person_id,
            report,
            now,
            limits,
            f"positions[{n}]: " if many else "",
        )
        for n, report in enumerate(reports)
    ]
    return fixes, others


async def latest(
    *,
    db_session: AsyncSession,
    incident_id: int | None,
    unit_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[tuple[LastPosition, Person]], int]:
    """Each person's newest fix, newest first: of the officers on an incident, of a unit (and its
    sub-units), or everyone's; one page, and how many match in all."""
    query = (
        select(LastPosition, Person).join(Person, Person.id == LastPosition.person_id).where(Person.active)
    )
    if incident_id is not None:
        if await db_session.get(Incident, incident_id) is None:
            raise NotFound(f"there is no incident {incident_id}")
        on_it = select(Assignment.person_id).where(Assignment.incident_id == incident_id)
        query = query.where(LastPosition.person_id.in_(on_it))
    if unit_id is not None:
        await units.get(db_session=db_session, unit_id=unit_id)
        query = query.where(Person.unit_id.in_(await units.subtree(db_session=db_session, unit_id=unit_id)))
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await db_session.execute(
        query.order_by(LastPosition.at.desc(), LastPosition.person_id).limit(limit).offset(offset)
    )
    return [(last, person) for last, person in rows], total


async def track(
    *,
    db_session: AsyncSession,
    person_id: int,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[PositionFix], int]:
    """A person's fixes with ``since <= at < until``, oldest first; one page, and how many in all."""
    if since is not None and until is not None and until <= since:
        raise Invalid("until must be after since")
    if await db_session.get(Person, person_id) is None:
        raise NotFound(f"there is no person with id {person_id}")
    query = select(PositionFix).where(PositionFix.person_id == person_id)
    if since is not None:
        query = query.where(PositionFix.at >= since)
    if until is not None:
        query = query.where(PositionFix.at < until)
    total = await db_session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = await db_session.scalars(
        query.order_by(PositionFix.at, PositionFix.id).limit(limit).offset(offset)
    )
    return list(page.all()), total
