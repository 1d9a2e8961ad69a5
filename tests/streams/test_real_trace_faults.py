"""The three faults real traces exposed (issue 9), each on hand-written timestamped fixes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from fleetwatch.records import AlertType, Fix
from geofence import Rules
from tests.streams.helpers import drive, of_type, park, run
from tests.streams.world import DEPOT, fix, ts

M_PER_DEG_LAT = 111_320.0


def _shift_north(f: Fix, metres: float) -> Fix:
    return replace(f, lat=f.lat + metres / M_PER_DEG_LAT)


# ------------------------------------------------------------------ 1. trips started one fix late


def test_a_trip_starts_on_the_moving_fix_that_ends_a_stop(rules: Rules) -> None:
    first = drive("2026-03-02 10:00:00", *DEPOT, minutes=10)
    stop = park("2026-03-02 10:10:30", first[-1].lat, first[-1].lon, minutes=6, step_s=30, acc=True)
    second = drive("2026-03-02 10:17:00", first[-1].lat, first[-1].lon, minutes=10)
    result = run(rules, first + stop + second)
    trips = result.sorted_trips()
    assert [(t.start, t.end) for t in trips] == [
        (ts("2026-03-02 10:00:00"), ts("2026-03-02 10:10:30")),
        (ts("2026-03-02 10:17:00"), ts("2026-03-02 10:27:00")),  # not 10:17:30: the first fix counts
    ]
    assert trips[1].fix_count == len(second)
    clean = run(rules, second)
    assert trips[1].distance_m == clean.sorted_trips()[0].distance_m


def test_a_trip_starts_on_the_first_fix_after_a_silence_spent_standing(rules: Rules) -> None:
    first = drive("2026-03-02 10:00:00", *DEPOT, minutes=10, step_s=30, speed=30)
    # no fix for 8 minutes, then found moving from (almost) the same spot
    second = drive("2026-03-02 10:18:00", first[-1].lat, first[-1].lon, minutes=10, step_s=30, speed=30)
    trips = run(rules, first + second).sorted_trips()
    assert [t.start for t in trips] == [ts("2026-03-02 10:00:00"), ts("2026-03-02 10:18:00")]


# ------------------------------------------------------------------ 2. position outliers


def _slow_trip(start: str) -> list[Fix]:
    """About 1 km at 25 km/h, one fix per 30 s, then a long stop (a short city trip)."""
    moving = drive(start, *DEPOT, minutes=2.5, step_s=30, speed=25)
    return moving + park(
        (moving[-1].ts + timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M:%S"),
        moving[-1].lat,
        moving[-1].lon,
        minutes=10,
    )


def test_a_one_fix_500_m_jump_leaves_the_distance_within_5_percent(rules: Rules) -> None:
    clean = _slow_trip("2026-03-02 10:00:00")
    jumped = list(clean)
    jumped[3] = _shift_north(jumped[3], 500.0)
    [expected] = run(rules, clean).sorted_trips()
    result = run(rules, jumped)
    [trip] = result.sorted_trips()
    assert expected.distance_m > 500
    assert abs(trip.distance_m - expected.distance_m) <= 0.05 * expected.distance_m
    assert result.outliers == 1  # counted, not silently dropped
    unfiltered = expected.distance_m + 2 * 500  # what the raw sum would have said
    assert trip.distance_m < 0.6 * unfiltered


def test_a_jump_on_the_first_fix_after_signal_loss_is_screened_out(rules: Rules) -> None:
    clean = _slow_trip("2026-03-02 10:00:00")
    lost = clean[:2] + clean[5:]  # 90 s without a fix ...
    lost[2] = _shift_north(lost[2], 500.0)  # ... and the first one after it lands 500 m away
    [expected] = run(rules, clean[:2] + clean[5:]).sorted_trips()
    result = run(rules, lost)
    [trip] = result.sorted_trips()
    assert abs(trip.distance_m - expected.distance_m) <= 0.05 * expected.distance_m
    assert result.outliers == 1


def test_real_speed_is_not_mistaken_for_a_jump(rules: Rules) -> None:
    fast = drive("2026-03-02 10:00:00", *DEPOT, minutes=5, step_s=30, speed=110)
    result = run(rules, fast)
    assert result.outliers == 0
    [trip] = result.sorted_trips()
    assert trip.fix_count == len(fast)


# ------------------------------------------------------------------ 3. standing through a silence


def test_a_22_minute_standstill_silence_splits_the_trip(rules: Rules) -> None:
    first = drive("2026-03-07 10:00:00", *DEPOT, minutes=10, step_s=30, speed=30)
    end = first[-1]
    # 22 minutes without a fix; the first one after it says "moving", 12 m from where it stood
    resume = fix("2026-03-07 10:32:00", end.lat, end.lon + 12 / 94_400, speed=15.0)
    second = drive("2026-03-07 10:32:30", resume.lat, resume.lon, minutes=10, step_s=30, speed=30)
    result = run(rules, [*first, resume, *second])
    trips = result.sorted_trips()
    assert [(t.start, t.end) for t in trips] == [
        (ts("2026-03-07 10:00:00"), ts("2026-03-07 10:10:00")),
        (ts("2026-03-07 10:32:00"), ts("2026-03-07 10:42:30")),
    ]
    # each off-hours alert (a Saturday) covers its own trip, not the standstill between them
    off_hours = of_type(result, AlertType.OFF_HOURS)
    assert [(a.start, a.end) for a in off_hours] == [(t.start, t.end) for t in trips]
    [offline] = of_type(result, AlertType.OFFLINE)  # the silence itself, with ignition on
    assert (offline.start, offline.end) == (ts("2026-03-07 10:10:00"), ts("2026-03-07 10:32:00"))


def test_a_silence_spent_driving_does_not_split_the_trip(rules: Rules) -> None:
    first = drive("2026-03-02 10:00:00", *DEPOT, minutes=10, step_s=30, speed=40)
    # 20 minutes without a fix, found 13 km further on, still driving: an outage, one trip
    later = drive("2026-03-02 10:30:00", first[-1].lat, first[-1].lon + 13_000 / 94_400, minutes=5, step_s=30)
    trips = run(rules, first + later).sorted_trips()
    assert [(t.start, t.end) for t in trips] == [(ts("2026-03-02 10:00:00"), ts("2026-03-02 10:35:00"))]


def test_standing_at_a_stop_through_a_short_silence_still_ends_the_trip_at_the_stop(rules: Rules) -> None:
    first = drive("2026-03-02 10:00:00", *DEPOT, minutes=10)
    parked = park("2026-03-02 10:20:00", first[-1].lat, first[-1].lon, minutes=5)
    [trip] = run(rules, first + parked).sorted_trips()
    assert trip.end == ts("2026-03-02 10:10:00")
