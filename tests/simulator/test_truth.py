"""Ground truth agrees with the fixes it labels (checked independently of how it was derived)."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time, timedelta
from typing import Any

import chinese_calendar
import pytest
from shapely.geometry import Point, shape

from fleetwatch.records import parse_fix
from simulator._dataset import Dataset, build_fleet
from simulator._geography import distance_outside_m, haversine_m
from simulator._motion import TZ, Sample
from simulator._scenarios import DATES, PLACE_FOR, SCENARIOS, Run
from simulator._world import DEPOT_RADIUS_M


def run_of(ds: Dataset, name: str) -> Run:
    return next(r for r in ds.runs if r.scenario == name)


def truth_of(ds: Dataset, name: str, expect: bool = True) -> list[dict[str, Any]]:
    return [t for t in ds.truth if t["scenario"] == name and t.get("expect", True) is expect]


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def within(run: Run, line: dict[str, Any]) -> list[Sample]:
    a, b = ts(line["start"]), ts(line["end"])
    return [s for s in run.received if a <= s.t <= b and s.valid]


def test_every_scenario_yields_exactly_its_intended_violations(clean: Dataset) -> None:
    for run in clean.runs:
        got = {t["type"] for t in truth_of(clean, run.scenario)}
        assert got == run.intended, run.scenario


def test_truth_lines_follow_the_world_format(clean: Dataset) -> None:
    plates = {v.vehicle_id for v in clean.world.vehicles}
    for line in clean.truth:
        assert {"type", "vehicle_id", "start", "end", "scenario", "note"} <= line.keys()
        assert line["vehicle_id"] in plates
        assert datetime.fromisoformat(line["start"]).utcoffset() == timedelta(hours=8)
        assert ts(line["start"]) <= ts(line["end"])
        assert line.get("expect", True) in (True, False)


def test_dates_come_from_the_state_council_calendar() -> None:
    for key in ("makeup_saturday", "makeup_sunday"):
        d = DATES[key]
        assert d.weekday() >= 5 and chinese_calendar.is_workday(d), key
    assert DATES["makeup_saturday"].weekday() == 5 and DATES["makeup_sunday"].weekday() == 6
    assert chinese_calendar.is_holiday(DATES["holiday"]) and DATES["holiday"].weekday() < 5
    assert DATES["weekend"].weekday() == 5 and not chinese_calendar.is_workday(DATES["weekend"])
    assert chinese_calendar.is_workday(DATES["workday"])
    assert chinese_calendar.is_workday(DATES["workday"] + timedelta(days=1))  # depot_night's morning
    assert all(d < date(2026, 11, 28) and d.year == 2026 for d in DATES.values())


@pytest.mark.parametrize("name", ["weekend", "holiday", "night"])
def test_off_hours_trips_really_are_outside_working_time(clean: Dataset, name: str) -> None:
    run = run_of(clean, name)
    lines = truth_of(clean, name)
    assert len(lines) == len(run.drives) >= 1
    for line in lines:
        start = datetime.fromisoformat(line["start"])
        off_day = not chinese_calendar.is_workday(start.date())
        assert off_day or not 8 <= start.hour < 18
        assert ts(line["end"]) - ts(line["start"]) >= 300


@pytest.mark.parametrize("name", ["workday", "makeup_saturday", "makeup_sunday", "order_off_hours"])
def test_legitimate_trips_are_marked_must_not_alert(clean: Dataset, name: str) -> None:
    run = run_of(clean, name)
    lines = truth_of(clean, name, expect=False)
    assert len(lines) == len(run.drives) >= 2
    assert all(line["type"] == "off_hours" for line in lines)
    if name != "order_off_hours":
        for d in run.drives:
            for t in (d.start, d.end):
                local = datetime.fromtimestamp(t, TZ)
                assert chinese_calendar.is_workday(local.date()) and 8 <= local.hour < 18


def test_order_covers_the_weekend_trips(clean: Dataset) -> None:
    run = run_of(clean, "order_off_hours")
    (order,) = run.orders
    for d in run.drives:
        assert order.covers(datetime.fromtimestamp(d.start, TZ), datetime.fromtimestamp(d.end, TZ))


def test_out_of_area_fixes_are_outside_region_and_buffer(clean: Dataset) -> None:
    run = run_of(clean, "out_of_area")
    region = clean.world.geo.city("js.nj").polygon
    (line,) = truth_of(clean, "out_of_area")
    pts = within(run, line)
    assert len(pts) >= 2 and ts(line["end"]) - ts(line["start"]) >= 60
    assert distance_outside_m(region, pts[0].lat, pts[0].lon) > 200
    # the end is the last fix outside before returning, which may be within the buffer
    assert distance_outside_m(region, pts[-1].lat, pts[-1].lon) > 0
    after = [s for s in run.received if s.valid and s.t > ts(line["end"])]
    assert after and region.contains(Point(after[0].lon, after[0].lat))
    assert all(not region.contains(Point(s.lon, s.lat)) for s in pts)
    # everything before and after the excursion is inside the permitted region + buffer
    rest = [s for s in run.received if s.valid and not ts(line["start"]) <= s.t <= ts(line["end"])]
    assert all(distance_outside_m(region, s.lat, s.lon) <= 200 for s in rest)


def test_order_area_contains_every_outside_position(clean: Dataset) -> None:
    run = run_of(clean, "order_out_of_area")
    (order,) = run.orders
    area = shape(order.destination_area)
    region = clean.world.geo.city("js.nj").polygon
    outside = [s for s in run.received if s.valid and not region.contains(Point(s.lon, s.lat))]
    assert len(outside) > 50
    assert all(area.contains(Point(s.lon, s.lat)) for s in outside)
    (line,) = truth_of(clean, "order_out_of_area", expect=False)
    assert order.overlaps(datetime.fromisoformat(line["start"]), datetime.fromisoformat(line["end"]))


def test_boundary_jitter_stays_within_the_buffer(clean: Dataset) -> None:
    run = run_of(clean, "boundary_jitter")
    region = clean.world.geo.city("js.nj").polygon
    distances = [distance_outside_m(region, s.lat, s.lon) for s in run.received if s.valid]
    assert max(distances) <= 200
    assert sum(1 for d in distances if d > 0) >= 10  # it really does cross the line, repeatedly


@pytest.mark.parametrize("category", sorted(PLACE_FOR))
def test_dwell_is_inside_the_zone_for_ten_minutes(clean: Dataset, category: str) -> None:
    name = f"dwell_{category}"
    run = run_of(clean, name)
    place = clean.world.geo.place(PLACE_FOR[category])
    zone = place.shape()
    (line,) = truth_of(clean, name)
    assert line["zone_id"] == place.zone_id and line["category"] == category
    pts = within(run, line)
    assert ts(line["end"]) - ts(line["start"]) >= 600
    assert all(zone.contains(Point(s.lon, s.lat)) for s in pts)
    assert all(s.speed < 3 or not s.acc for s in pts)


@pytest.mark.parametrize("category", sorted(PLACE_FOR))
def test_drive_by_passes_through_without_stopping(clean: Dataset, category: str) -> None:
    name = f"driveby_{category}"
    run = run_of(clean, name)
    zone = clean.world.geo.place(PLACE_FOR[category]).shape()
    (line,) = truth_of(clean, name, expect=False)
    inside = [s for s in within(run, line) if zone.contains(Point(s.lon, s.lat))]
    assert inside, "the drive-by never entered the zone"
    assert all(s.speed >= 3 and s.acc for s in inside)
    assert not truth_of(clean, name)


def test_depot_night(clean: Dataset) -> None:
    run = run_of(clean, "depot_night")
    (line,) = truth_of(clean, "depot_night")
    assert line["start"] == line["end"]
    check = datetime.fromisoformat(line["start"])
    assert (check.hour, check.minute) == (2, 0)
    last = [s for s in run.received if s.valid and s.t <= check.timestamp()][-1]
    u = run.vehicle.unit
    assert haversine_m(last.lat, last.lon, u.depot_lat, u.depot_lon) > DEPOT_RADIUS_M
    # every other vehicle is at its depot at every 02:00 its data covers
    for other in clean.runs:
        if other is run:
            continue
        for s in other.received:
            local = datetime.fromtimestamp(s.t, TZ)
            if s.valid and not s.acc and local.hour == 2 and local.minute < 5:
                v = other.vehicle.unit
                assert haversine_m(s.lat, s.lon, v.depot_lat, v.depot_lon) <= DEPOT_RADIUS_M, other.scenario


def test_overspeed_span(clean: Dataset) -> None:
    run = run_of(clean, "overspeed")
    (line,) = truth_of(clean, "overspeed")
    pts = within(run, line)
    assert ts(line["end"]) - ts(line["start"]) >= 30
    assert all(s.speed > 120 for s in pts)
    assert max(s.speed for r in clean.runs if r.scenario != "overspeed" for s in r.samples) < 120


def test_power_cut_span(clean: Dataset) -> None:
    (line,) = truth_of(clean, "power_cut")
    pts = [s for s in run_of(clean, "power_cut").received if ts(line["start"]) <= s.t <= ts(line["end"])]
    assert pts and all(s.alarm & 256 and s.acc for s in pts)


def test_offline_gap_and_late_upload(clean: Dataset) -> None:
    (gap,) = truth_of(clean, "offline")
    assert ts(gap["end"]) - ts(gap["start"]) > 900
    late = run_of(clean, "offline_late_upload")
    times = sorted(s.t for s in late.received)
    assert max(b - a for a, b in itertools.pairwise(times)) <= 300  # complete in event time
    buffered = [s for s in late.received if s.emit > s.t]
    assert len(buffered) > 50 and max(s.emit - s.t for s in buffered) > 600  # and it really arrived late
    (quiet,) = truth_of(clean, "offline_late_upload", expect=False)
    assert quiet["type"] == "offline"


def test_per_device_send_order_stays_within_the_lateness_window(faulty: Dataset) -> None:
    """Faults reorder, but never beyond lateness_seconds (600 s) of what a device already sent."""
    held_back = 0
    for stream in faulty.streams:
        newest: int | None = None
        for m in stream:
            if m.kind == "malformed":
                continue
            if newest is not None:
                assert newest - m.t <= 600, m.payload
                held_back += newest > m.t
            newest = m.t if newest is None else max(newest, m.t)
    assert held_back > 100  # and there really is reordering to absorb


def test_every_fix_line_parses_and_round_trips(clean: Dataset) -> None:
    far = datetime(2030, 1, 1, tzinfo=TZ)
    for _v, m in clean.messages():
        fix = parse_fix(m.payload, now=far)
        assert fix.to_json() == m.payload or parse_fix(fix.to_json(), now=far) == fix


def test_invalid_fixes_occur_but_never_in_critical_drives(clean: Dataset) -> None:
    invalid = [(r.scenario, s) for r in clean.runs for s in r.samples if not s.valid]
    assert invalid
    critical = {"overspeed", "power_cut", "boundary_jitter"} | {f"dwell_{c}" for c in PLACE_FOR}
    assert not [name for name, _ in invalid if name in critical and _.acc and _.speed > 120]
    for name in ("boundary_jitter",):
        run = run_of(clean, name)
        (line,) = truth_of(clean, name, expect=False)
        assert all(s.valid for s in run.samples if ts(line["start"]) <= s.t <= ts(line["end"]))


def test_fleet_truth_is_derived_for_mixed_vehicles() -> None:
    ds = build_fleet(40, seed=3, mix=0.5)
    mixed = [r for r in ds.runs if r.scenario in SCENARIOS]
    assert mixed
    for r in mixed:
        got = {
            t["type"] for t in ds.truth if t["vehicle_id"] == r.vehicle.vehicle_id and t.get("expect", True)
        }
        assert got == r.intended, r.scenario
    ordinary = [r for r in ds.runs if r.scenario == "fleet_workday"]
    assert ordinary and not [
        t
        for t in ds.truth
        if t.get("expect", True) and t["vehicle_id"] in {r.vehicle.vehicle_id for r in ordinary}
    ]
    assert {r.vehicle.city for r in ds.runs} == {"js.nj", "js.zj"}


def test_fleet_window_clips_to_duration() -> None:
    start = datetime.combine(DATES["workday"], datetime.min.time(), TZ) + timedelta(hours=9)
    ds = build_fleet(8, seed=3, start=start, duration=timedelta(hours=2), mix=0.0)
    times = [m.t for s in ds.streams for m in s]
    assert times and min(times) >= start.timestamp() and max(times) < start.timestamp() + 7200


def test_all_scenarios_are_in_the_catalogue(clean: Dataset) -> None:
    assert [r.scenario for r in clean.runs] == list(SCENARIOS)
    assert len({r.vehicle.vehicle_id for r in clean.runs}) == len(SCENARIOS)


def test_truth_is_computed_with_the_detection_org_defaults() -> None:
    """One source: fleetwatch.settings.ORG_DEFAULTS feeds geofence's OrgSettings and the truth."""
    from geofence import OrgSettings
    from simulator import _scenarios as sc

    d = OrgSettings()

    def seconds(t: time) -> int:
        return t.hour * 3600 + t.minute * 60

    pairs = [
        (seconds(d.office_hours.start), sc.OFFICE_START_S),
        (seconds(d.office_hours.end), sc.OFFICE_END_S),
        (d.off_hours_min_seconds, sc.OFF_HOURS_MIN_S),
        (d.off_hours_min_meters, sc.OFF_HOURS_MIN_M),
        (d.region_buffer_m, sc.REGION_BUFFER_M),
        (d.out_of_area_min_seconds, sc.OUT_OF_AREA_MIN_S),
        (d.out_of_area_min_fixes, sc.OUT_OF_AREA_MIN_FIXES),
        (d.stationary_speed_kmh, sc.STATIONARY_KMH),
        (d.dwell_min_seconds, sc.DWELL_MIN_S),
        (d.overspeed_kmh, sc.OVERSPEED_KMH),
        (d.overspeed_min_seconds, sc.OVERSPEED_MIN_S),
        (d.offline_after_seconds, sc.OFFLINE_AFTER_S),
    ]
    assert [detection for detection, _ in pairs] == [truth for _, truth in pairs]
    assert d.depot_check_time == time(2, 0)  # what the truth's notes say
