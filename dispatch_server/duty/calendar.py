"""The court's working calendar (R10): which instants fall in working hours, and where a local day
or week begins and ends in UTC. Pure functions of the ``duty`` settings; no database, no clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from zhihui.settings import DutySettings

__all__ = [
    "Period",
    "day_bounds",
    "is_working_day",
    "local_day",
    "period_at",
    "periods_of",
    "week_bounds",
    "zone",
]


@dataclass(frozen=True, slots=True)
class Period:
    """One stretch of working hours on one day, in UTC."""

    starts_at: datetime
    ends_at: datetime
    """Exclusive."""


def zone(settings: DutySettings) -> ZoneInfo:
    """The court's time zone."""
    return ZoneInfo(settings.time_zone)


def is_working_day(settings: DutySettings, day: date) -> bool:
    """A working weekday that is no holiday, or a make-up working day."""
    if day in settings.extra_working_days:
        return True
    return day.isoweekday() in settings.working_days and day not in settings.holidays


def periods_of(settings: DutySettings, day: date) -> list[Period]:
    """The working periods of a local day, in UTC (none on a day off)."""
    if not is_working_day(settings, day):
        return []
    tz = zone(settings)
    return [
        Period(
            starts_at=datetime.combine(day, period.start, tz).astimezone(UTC),
            ends_at=datetime.combine(day, period.end, tz).astimezone(UTC),
        )
        for period in settings.working_hours
    ]


def local_day(settings: DutySettings, moment: datetime) -> date:
    """The court's date at that instant."""
    return moment.astimezone(zone(settings)).date()


def period_at(settings: DutySettings, moment: datetime) -> Period | None:
    """The working period holding that instant; None outside working hours (nights, lunch, days off)."""
    for period in periods_of(settings, local_day(settings, moment)):
        if period.starts_at <= moment < period.ends_at:
            return period
    return None


def day_bounds(settings: DutySettings, day: date) -> tuple[datetime, datetime]:
    """Where a local day begins and ends (exclusive), in UTC."""
    tz = zone(settings)
    start = datetime.combine(day, datetime.min.time(), tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def week_bounds(settings: DutySettings, day: date) -> tuple[datetime, datetime]:
    """The local week (Monday to Sunday) holding that day, in UTC."""
    monday = day - timedelta(days=day.isoweekday() - 1)
    return day_bounds(settings, monday)[0], day_bounds(settings, monday + timedelta(days=6))[1]
