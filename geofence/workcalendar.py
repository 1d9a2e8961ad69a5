"""China's work calendar (statutory holidays and make-up working days) and office hours."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar


class CalendarError(LookupError):
    """A date nobody has told us about: guessing 'working day' would hide real violations."""


@dataclass(frozen=True, slots=True)
class YearSchedule:
    """One year's published schedule: days off and make-up working days (调休)."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()


@dataclass(frozen=True)
class WorkCalendar:
    """Working days: config-added years first, then the `chinese_calendar` package; else an error.

    A year listed in the config is authoritative for that year: its `holidays` are days off,
    its `workdays` are working days, any other date of that year falls back to the package if
    the package covers the year, and to "Monday-Friday" otherwise (the config declared it).
    """

    extra: Mapping[int, YearSchedule] = field(default_factory=dict)

    def is_workday(self, day: date) -> bool:
        schedule = self.extra.get(day.year)
        if schedule is not None:
            if day in schedule.holidays:
                return False
            if day in schedule.workdays:
                return True
        try:
            return _package_is_workday(day)
        except NotImplementedError:
            if schedule is not None:
                return day.weekday() < 5
            raise CalendarError(
                f"{day.isoformat()}: the work calendar does not cover {day.year}; add "
                f"calendar.years.{day.year} (holidays, workdays) to rules.yaml"
            ) from None

    def covers(self, day: date) -> bool:
        try:
            self.is_workday(day)
        except CalendarError:
            return False
        return True


@functools.lru_cache(maxsize=8192)
def _package_is_workday(day: date) -> bool:
    # chinese_calendar re-derives its covered range on every call; a day's answer never changes.
    return bool(chinese_calendar.is_workday(day))


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """Office hours on working days, local time, [start, end)."""

    start: time = time(8, 0)
    end: time = time(18, 0)


def is_working_time(moment: datetime, tz: ZoneInfo, hours: OfficeHours, calendar: WorkCalendar) -> bool:
    local = moment.astimezone(tz)
    if not calendar.is_workday(local.date()):
        return False
    return hours.start <= local.time().replace(tzinfo=None) < hours.end


def working_seconds(
    start: datetime, end: datetime, tz: ZoneInfo, hours: OfficeHours, calendar: WorkCalendar
) -> float:
    """Seconds of [start, end) that fall inside office hours on working days."""
    if end <= start:
        return 0.0
    total = 0.0
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        if calendar.is_workday(day):
            open_at = datetime.combine(day, hours.start, tz)
            close_at = datetime.combine(day, hours.end, tz)
            lo, hi = max(start, open_at), min(end, close_at)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


def schedules_from(years: Mapping[int, tuple[Iterable[date], Iterable[date]]]) -> dict[int, YearSchedule]:
    return {y: YearSchedule(frozenset(h), frozenset(w)) for y, (h, w) in years.items()}
