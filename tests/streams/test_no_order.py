"""无单出车 (`no_order`): a trip in working time without an approved order, where orders are required."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fleetwatch.records import AlertType, Fix
from geofence import Rules, load_rules
from tests.streams.helpers import drive, of_type, park, run
from tests.streams.world import DEPOT, RULES, order, ts, write_world


def _requiring_orders(directory: Path) -> Rules:
    unit = "  - id: js.nj.u01\n    parent: js.nj\n"
    required = "    settings:\n      orders_required: true\n"
    return load_rules(write_world(directory, RULES.replace(unit, unit + required)))


def _errand(start: str) -> list[Fix]:
    """10 minutes' drive, then parked."""
    moving = drive(start, *DEPOT, minutes=10)
    parked_at = (moving[-1].ts + timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%S")
    return moving + park(parked_at, moving[-1].lat, moving[-1].lon, minutes=10)


def test_a_working_time_trip_without_an_order_is_a_no_order_alert(tmp_path: Path) -> None:
    rules = _requiring_orders(tmp_path)
    result = run(rules, _errand("2026-03-02 10:00:00"))  # a Monday, office hours
    [trip] = result.sorted_trips()
    [alert] = of_type(result, AlertType.NO_ORDER)
    assert (alert.start, alert.end, alert.trip_id) == (trip.start, trip.end, trip.trip_id)
    assert alert.raised_at == trip.end
    assert alert.details["working_seconds"] == trip.duration_s  # all of it in office hours


def test_an_approved_order_overlapping_the_trip_satisfies_it(tmp_path: Path) -> None:
    rules = _requiring_orders(tmp_path)
    covered = [order("o-1", "2026-03-02 09:30:00", "2026-03-02 10:05:00")]
    assert not of_type(run(rules, _errand("2026-03-02 10:00:00"), covered), AlertType.NO_ORDER)


def test_off_by_default_and_not_for_off_hours_trips(rules: Rules, tmp_path: Path) -> None:
    assert not of_type(run(rules, _errand("2026-03-02 10:00:00")), AlertType.NO_ORDER)
    saturday = run(_requiring_orders(tmp_path), _errand("2026-03-07 10:00:00"))
    assert not of_type(saturday, AlertType.NO_ORDER)
    assert [a.start for a in of_type(saturday, AlertType.OFF_HOURS)] == [ts("2026-03-07 10:00:00")]
