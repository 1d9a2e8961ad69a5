"""Property tests: arrival order within the lateness window, duplicates, and late re-evaluation
never change the trips and alerts the core produces."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwatch.records import Fix
from geofence import Rules
from tests.streams.helpers import drive, park, run
from tests.streams.world import DEPOT, GOLF, fix


def _day() -> list[Fix]:
    """A Saturday with a bit of everything: off-hours trip, golf visit, excursion, speeding,
    an outage with ignition on, a power cut."""
    a = drive("2026-03-07 09:00:00", *DEPOT, minutes=12, speed=50, dlat=(GOLF[0] - DEPOT[0]) / 24)
    a += drive("2026-03-07 09:12:30", a[-1].lat, a[-1].lon, minutes=5, speed=60)
    golf = park("2026-03-07 09:20:00", *GOLF, minutes=25)
    b = drive("2026-03-07 09:46:00", *GOLF, minutes=12, speed=60)  # east, leaves the region
    fast = drive("2026-03-07 09:58:10", 32.10, b[-1].lon, minutes=1.5, step_s=10, speed=130)
    c = drive("2026-03-07 10:00:00", 32.10, fast[-1].lon, minutes=10, speed=60, dlon=-0.0055)
    gap = drive("2026-03-07 10:30:00", 32.10, 118.80, minutes=5, speed=40)  # 20 min silent before
    cut = [fix(f"2026-03-07 10:36:{s:02d}", 32.10, 118.85, 40, alarm=256) for s in (0, 20, 40)]
    home = park("2026-03-07 10:40:00", 32.10, 118.85, minutes=15)
    return a + golf + b + fast + c + gap + cut + home


DAY = _day()


def _summary(rules: Rules, fixes: list[Fix]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    result = run(rules, fixes)
    alerts = [a.to_dict() for a in result.sorted_alerts()]
    trips = [t.to_dict() for t in result.sorted_trips()]
    return alerts, trips


def test_the_sample_day_produces_every_kind_it_should(rules: Rules) -> None:
    alerts, trips = _summary(rules, DAY)
    kinds = {a["type"] for a in alerts}
    assert {"off_hours", "private_destination", "out_of_area", "overspeed", "offline", "power_cut"} <= kinds
    assert trips


def _arrival_order(fixes: list[Fix], delays: list[float], dup_mask: list[bool]) -> list[Fix]:
    stamped = [
        (f.ts + timedelta(seconds=d), i, f) for i, (f, d) in enumerate(zip(fixes, delays, strict=True))
    ]
    stamped += [
        (f.ts + timedelta(seconds=d / 2 + 1), len(fixes) + i, f)
        for i, (f, d, dup) in enumerate(zip(fixes, delays, dup_mask, strict=True))
        if dup
    ]
    stamped.sort(key=lambda x: (x[0], x[1]))
    return [f for _, _, f in stamped]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reordering_within_lateness_and_duplicates_leave_results_unchanged(
    rules: Rules, data: st.DataObject
) -> None:
    lateness = rules.defaults.lateness_seconds
    n = len(DAY)
    delays = data.draw(st.lists(st.floats(0, lateness), min_size=n, max_size=n))
    dups = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    assert _summary(rules, _arrival_order(DAY, delays, dups)) == _summary(rules, DAY)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fixes_later_than_lateness_are_re_evaluated_to_the_same_results(
    rules: Rules, data: st.DataObject
) -> None:
    # Delays up to 1 h: far beyond the 600 s lateness, within the 3 h re-evaluation horizon.
    n = len(DAY)
    delays = data.draw(
        st.lists(st.sampled_from([0.0, 0.0, 0.0, 900.0, 1800.0, 3600.0]), min_size=n, max_size=n)
    )
    dups = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    assert _summary(rules, _arrival_order(DAY, delays, dups)) == _summary(rules, DAY)
