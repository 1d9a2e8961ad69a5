"""The work calendar: State Council schedule incl. make-up days, uncovered years, config years."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geofence import CalendarError, OfficeHours, WorkCalendar, YearSchedule
from geofence.workcalendar import is_working_time, working_seconds

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()
# 2026 make-up working days (调休) per the State Council notice, as chinese_calendar has them.
MAKE_UP_2026 = [
    date(2026, 1, 4),
    date(2026, 2, 14),
    date(2026, 2, 28),
    date(2026, 5, 9),
    date(2026, 9, 20),
    date(2026, 10, 10),
]


@pytest.mark.parametrize("day", MAKE_UP_2026)
def test_2026_make_up_weekend_days_are_working_days(day: date) -> None:
    assert day.weekday() >= 5
    assert CAL.is_workday(day)


@pytest.mark.parametrize(
    "day", [date(2026, 1, 1), date(2026, 2, 17), date(2026, 5, 5), date(2026, 10, 2), date(2026, 10, 7)]
)
def test_2026_statutory_holidays_on_weekdays_are_days_off(day: date) -> None:
    assert day.weekday() < 5
    assert not CAL.is_workday(day)


def test_uncovered_year_is_an_error_not_a_working_day() -> None:
    with pytest.raises(CalendarError, match=r"does not cover 2027.*calendar\.years\.2027"):
        CAL.is_workday(date(2027, 3, 3))
    assert not CAL.covers(date(2027, 3, 3))


def test_config_added_year_works_and_overrides() -> None:
    cal = WorkCalendar({2027: YearSchedule(frozenset({date(2027, 1, 1)}), frozenset({date(2027, 2, 7)}))})
    assert not cal.is_workday(date(2027, 1, 1))  # Friday, holiday
    assert cal.is_workday(date(2027, 2, 7))  # Sunday, make-up day
    assert cal.is_workday(date(2027, 3, 3))  # ordinary Wednesday
    assert not cal.is_workday(date(2027, 3, 6))  # ordinary Saturday
    override = WorkCalendar({2026: YearSchedule(frozenset({date(2026, 3, 4)}), frozenset())})
    assert not override.is_workday(date(2026, 3, 4))
    assert override.is_workday(date(2026, 3, 5))  # rest of the year still from the package


def test_office_hours_boundaries() -> None:
    hours = OfficeHours(time(8, 0), time(18, 0))
    monday = date(2026, 3, 2)
    assert is_working_time(datetime.combine(monday, time(8, 0), SH), SH, hours, CAL)
    assert not is_working_time(datetime.combine(monday, time(7, 59), SH), SH, hours, CAL)
    assert not is_working_time(datetime.combine(monday, time(18, 0), SH), SH, hours, CAL)
    assert not is_working_time(datetime.combine(date(2026, 3, 7), time(10, 0), SH), SH, hours, CAL)


days_2026 = st.dates(date(2026, 1, 1), date(2026, 12, 30))


@given(days_2026, st.integers(0, 86_399), st.integers(1, 3 * 86_400))
def test_working_seconds_is_additive_and_bounded(day: date, offset: int, length: int) -> None:
    hours = OfficeHours()
    start = datetime.combine(day, time(0), SH) + timedelta(seconds=offset)
    mid = start + timedelta(seconds=length // 2)
    end = start + timedelta(seconds=length)
    whole = working_seconds(start, end, SH, hours, CAL)
    assert 0 <= whole <= length
    parts = working_seconds(start, mid, SH, hours, CAL) + working_seconds(mid, end, SH, hours, CAL)
    assert whole == pytest.approx(parts)


@given(days_2026, st.integers(0, 86_399))
def test_working_seconds_agrees_with_is_working_time(day: date, offset: int) -> None:
    hours = OfficeHours()
    moment = datetime.combine(day, time(0), SH) + timedelta(seconds=offset)
    one_second = working_seconds(moment, moment + timedelta(seconds=1), SH, hours, CAL)
    assert (one_second == 1.0) == is_working_time(moment, SH, hours, CAL)


@given(days_2026)
def test_a_weekday_rule_is_wrong_only_on_published_exceptions(day: date) -> None:
    if CAL.is_workday(day) != (day.weekday() < 5):
        off = not CAL.is_workday(day)
        # Every disagreement is a statutory holiday on a weekday or a make-up weekend day.
        assert (off and day.weekday() < 5) or (not off and day in MAKE_UP_2026)
