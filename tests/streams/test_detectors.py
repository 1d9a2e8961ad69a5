"""Detector behaviour on short hand-written, timestamped fix sequences (Traccar style)."""

from __future__ import annotations

from collections.abc import Callable

from fleetwatch.records import AlertType, OrderStatus
from geofence import Rules
from streams.core import EventKind, VehicleState, process
from tests.streams.helpers import drive, of_type, park, run
from tests.streams.world import DEPOT, GOLF, context, fix, order, square, ts

HOME = DEPOT  # inside the region, at the depot
# 2026-03-02 is a Monday (working day); 2026-03-07 a Saturday; 2026-02-28 a make-up Saturday.


# ---------------------------------------------------------------------------------- trips


def test_drive_then_stop_is_one_trip_ending_where_the_stop_began(rules: Rules) -> None:
    moving = drive("2026-03-02 10:00:00", *HOME, minutes=10)
    stop_at = moving[-1]
    stopped = park("2026-03-02 10:10:30", stop_at.lat, stop_at.lon, minutes=8)
    result = run(rules, moving + stopped)
    trips = result.sorted_trips()
    assert len(trips) == 1
    assert trips[0].start == ts("2026-03-02 10:00:00")
    assert trips[0].end == ts("2026-03-02 10:10:30")
    assert 6000 < trips[0].distance_m < 7500
    assert not result.alerts


def test_short_stop_does_not_split_a_trip_but_a_long_one_does(rules: Rules) -> None:
    a = drive("2026-03-02 10:00:00", *HOME, minutes=10)
    pause = park("2026-03-02 10:11:00", a[-1].lat, a[-1].lon, minutes=3, acc=True)
    b = drive("2026-03-02 10:15:00", a[-1].lat, a[-1].lon, minutes=10)
    long_stop = park("2026-03-02 10:26:00", b[-1].lat, b[-1].lon, minutes=10)
    c = drive("2026-03-02 10:40:00", b[-1].lat, b[-1].lon, minutes=10)
    result = run(rules, a + pause + b + long_stop + c)
    trips = result.sorted_trips()
    assert [(t.start, t.end) for t in trips] == [
        (ts("2026-03-02 10:00:00"), ts("2026-03-02 10:26:00")),
        (ts("2026-03-02 10:40:00"), ts("2026-03-02 10:50:00")),
    ]


def test_short_and_near_movement_is_noise(rules: Rules) -> None:
    jiggle = drive("2026-03-07 10:00:00", *HOME, minutes=2, speed=8)  # 2 min, ~270 m
    result = run(rules, jiggle + park("2026-03-07 10:03:00", jiggle[-1].lat, jiggle[-1].lon, minutes=10))
    assert not result.trips and not result.alerts


# ---------------------------------------------------------------------------------- off hours


def test_saturday_trip_is_off_hours_with_the_trip_span(rules: Rules) -> None:
    result = run(
        rules,
        drive("2026-03-07 10:00:00", *HOME, minutes=10)
        + park("2026-03-07 10:11:00", 32.0, 118.76, minutes=6),
    )
    [alert] = of_type(result, AlertType.OFF_HOURS)
    [trip] = result.sorted_trips()
    assert (alert.start, alert.end, alert.trip_id) == (trip.start, trip.end, trip.trip_id)
    assert alert.details["outside_seconds"] >= 600


def test_make_up_working_saturday_is_not_off_hours(rules: Rules) -> None:
    result = run(rules, drive("2026-02-28 10:00:00", *HOME, minutes=10))
    assert len(result.trips) == 1
    assert not of_type(result, AlertType.OFF_HOURS)


def test_holiday_weekday_is_off_hours(rules: Rules) -> None:
    result = run(rules, drive("2026-10-05 10:00:00", *HOME, minutes=10))  # National Day, a Monday
    assert len(of_type(result, AlertType.OFF_HOURS)) == 1


def test_trip_crossing_end_of_office_hours_counts_only_the_part_after(rules: Rules) -> None:
    # 17:57-18:07 on a working day: 7 min after 18:00 -> alert.
    late = run(rules, drive("2026-03-02 17:57:00", *HOME, minutes=10))
    assert len(of_type(late, AlertType.OFF_HOURS)) == 1
    # 17:54-18:00:30 at 20 km/h: 30 s and ~170 m after 18:00 -> no alert.
    edge = run(rules, drive("2026-03-02 17:54:00", *HOME, minutes=6.5, speed=20))
    assert len(edge.trips) == 1
    assert not of_type(edge, AlertType.OFF_HOURS)


def test_approved_order_covering_the_trip_exempts_it_and_a_cancelled_one_does_not(rules: Rules) -> None:
    fixes = drive("2026-03-07 10:00:00", *HOME, minutes=10)
    ok = order("o-1", "2026-03-07 09:30:00", "2026-03-07 12:00:00")
    exempted = run(rules, fixes, [ok])
    assert not exempted.alerts
    [trip] = exempted.sorted_trips()
    assert trip.order_id == "o-1"
    assert [d["order_id"] for d in exempted.exempted.values()] == ["o-1"]
    cancelled = order("o-2", "2026-03-07 09:30:00", "2026-03-07 12:00:00", status=OrderStatus.CANCELLED)
    assert len(of_type(run(rules, fixes, [cancelled]), AlertType.OFF_HOURS)) == 1


# ---------------------------------------------------------------------------------- out of area


def test_leaving_the_region_is_one_out_of_area_alert(rules: Rules) -> None:
    # East edge is lon 119.00. Drive from 118.97 east to ~119.05, then back west.
    out = drive("2026-03-02 10:00:00", 32.05, 118.97, minutes=10, speed=30)  # ~5 km east
    back = drive(
        "2026-03-02 10:10:30", 32.05, out[-1].lon, minutes=10, speed=30, dlon=-(out[1].lon - out[0].lon)
    )
    result = run(rules, out + back)
    [alert] = of_type(result, AlertType.OUT_OF_AREA)
    first_beyond = next(f for f in out if (f.lon - 119.0) * 94_400 > 200)
    assert alert.start == first_beyond.ts
    last_outside = [f for f in back if f.lon > 119.0][-1]
    assert alert.end == last_outside.ts


def test_jitter_within_the_buffer_raises_nothing(rules: Rules) -> None:
    fixes = [
        fix(f"2026-03-02 10:{m:02d}:{s:02d}", 32.05, 119.0015 if (m * 60 + s) % 20 else 118.9985, 30)
        for m in range(10)
        for s in (0, 10, 20, 30, 40, 50)
    ]  # ~140 m outside / inside, alternating
    assert not of_type(run(rules, fixes), AlertType.OUT_OF_AREA)


def test_jitter_on_the_way_back_does_not_split_the_excursion(rules: Rules) -> None:
    out = drive("2026-03-02 10:00:00", 32.05, 119.01, minutes=5, speed=0.0, dlon=0.0)  # ~940 m out
    jitter = [
        fix(f"2026-03-02 10:06:{s:02d}", 32.05, lon, 20)
        for s, lon in zip(
            (0, 10, 20, 30, 40, 50), (119.0008, 118.9995, 119.0012, 118.9993, 119.0009, 118.9996), strict=True
        )
    ]
    again = drive("2026-03-02 10:07:00", 32.05, 119.01, minutes=3, speed=0.0, dlon=0.0)
    home = drive("2026-03-02 10:11:00", 32.05, 118.99, minutes=5, speed=0.0, dlon=0.0)
    result = run(rules, out + jitter + again + home)
    assert len(of_type(result, AlertType.OUT_OF_AREA)) == 1


def test_a_single_fix_outside_is_not_an_excursion(rules: Rules) -> None:
    fixes = [
        fix("2026-03-02 10:00:00", 32.05, 118.99),
        fix("2026-03-02 10:00:30", 32.05, 119.02),
        fix("2026-03-02 10:01:40", 32.05, 118.97),
    ]
    assert not of_type(run(rules, fixes), AlertType.OUT_OF_AREA)


def test_order_with_destination_area_exempts_the_excursion(rules: Rules) -> None:
    out = drive("2026-03-02 10:00:00", 32.05, 118.97, minutes=15, speed=40)  # to ~119.07
    area = square(32.05, 119.04, 0.045)  # contains every position beyond the buffer
    ok = order("o-3", "2026-03-02 09:00:00", "2026-03-02 12:00:00", area)
    assert not of_type(run(rules, out, [ok]), AlertType.OUT_OF_AREA)
    # An area around the destination only does not cover the excursion's other positions.
    only_there = order("o-5", "2026-03-02 09:00:00", "2026-03-02 12:00:00", square(32.05, out[-1].lon, 0.005))
    assert len(of_type(run(rules, out, [only_there]), AlertType.OUT_OF_AREA)) == 1
    elsewhere = order("o-4", "2026-03-02 09:00:00", "2026-03-02 12:00:00", square(31.0, 120.0, 0.01))
    assert len(of_type(run(rules, out, [elsewhere]), AlertType.OUT_OF_AREA)) == 1


# ---------------------------------------------------------------------------------- private destination


def test_long_stop_at_golf_club_is_one_visit_alert_with_arrival_and_departure(rules: Rules) -> None:
    arrive = drive("2026-03-02 10:00:00", GOLF[0], GOLF[1] - 0.02, minutes=3, speed=40)
    stay = park("2026-03-02 10:03:30", *GOLF, minutes=40)
    leave = drive("2026-03-02 10:44:00", *GOLF, minutes=5, speed=40)
    result = run(rules, arrive + stay + leave)
    [alert] = of_type(result, AlertType.PRIVATE_DESTINATION)
    assert alert.start == ts("2026-03-02 10:03:30")
    assert alert.end == ts("2026-03-02 10:44:00")
    assert alert.details["zone_id"] == "golf-1" and alert.details["category"] == "golf"
    assert alert.details["arrival"] == ts("2026-03-02 10:03:30").isoformat()


def test_drive_by_and_short_stop_do_not_alert(rules: Rules) -> None:
    through = drive("2026-03-02 10:00:00", GOLF[0], GOLF[1] - 0.02, minutes=6, speed=40)
    short = park("2026-03-02 11:00:00", *GOLF, minutes=8)
    result = run(rules, through + short + drive("2026-03-02 11:09:00", *GOLF, minutes=3))
    assert not of_type(result, AlertType.PRIVATE_DESTINATION)


def test_order_whose_area_contains_the_place_exempts_the_visit(rules: Rules) -> None:
    stay = park("2026-03-02 10:00:00", *GOLF, minutes=30) + drive("2026-03-02 10:31:00", *GOLF, minutes=3)
    ok = order("o-5", "2026-03-02 09:00:00", "2026-03-02 12:00:00", square(*GOLF, 0.01))
    result = run(rules, stay, [ok])
    assert not of_type(result, AlertType.PRIVATE_DESTINATION)
    assert any(d["order_id"] == "o-5" for d in result.exempted.values())


# ------------------------------------------------------------------- depot, speed, offline, power


def test_parked_away_from_depot_at_two_am_alerts_once(rules: Rules) -> None:
    away = park("2026-03-02 22:00:00", 32.05, 118.80, minutes=300, step_s=600)
    [alert] = of_type(run(rules, away), AlertType.DEPOT_NIGHT)
    assert alert.start == alert.end == ts("2026-03-03 02:00:00")
    home = park("2026-03-02 22:00:00", *DEPOT, minutes=300, step_s=600)
    assert not of_type(run(rules, home), AlertType.DEPOT_NIGHT)


def test_overspeed_needs_duration(rules: Rules) -> None:
    fast = drive("2026-03-02 10:00:00", *HOME, minutes=1, step_s=10, speed=130)
    slow = drive("2026-03-02 10:01:10", 32.0, fast[-1].lon, minutes=1, step_s=10, speed=80)
    [alert] = of_type(run(rules, fast + slow), AlertType.OVERSPEED)
    assert (alert.start, alert.end) == (fast[0].ts, fast[-1].ts)
    brief = drive("2026-03-02 10:00:00", *HOME, minutes=20 / 60, step_s=10, speed=130)
    assert not of_type(run(rules, brief + slow), AlertType.OVERSPEED)


def test_offline_gap_with_ignition_on_alerts_and_with_ignition_off_not(rules: Rules) -> None:
    before = drive("2026-03-02 10:00:00", *HOME, minutes=2)
    after = drive("2026-03-02 10:22:00", 32.0, 118.75, minutes=2)
    [alert] = of_type(run(rules, before + after), AlertType.OFFLINE)
    assert (alert.start, alert.end) == (before[-1].ts, after[0].ts)
    parked = park("2026-03-02 10:03:00", 32.0, 118.75, minutes=0)
    assert not of_type(run(rules, before + parked + after), AlertType.OFFLINE)


def test_power_cut_with_ignition_on_is_one_episode(rules: Rules) -> None:
    ok = drive("2026-03-02 10:00:00", *HOME, minutes=1)
    cut = [fix(f"2026-03-02 10:01:{s:02d}", 32.0, 118.71, 40, alarm=256) for s in (10, 20, 30, 40)]
    cut_acc_off = [fix("2026-03-02 10:05:00", 32.0, 118.71, 0, acc=False, alarm=256)]
    result = run(rules, ok + cut + drive("2026-03-02 10:02:00", 32.0, 118.71, minutes=1) + cut_acc_off)
    [alert] = of_type(result, AlertType.POWER_CUT)
    assert (alert.start, alert.end) == (cut[0].ts, cut[-1].ts)


def test_invalid_fix_keeps_ignition_but_not_position(rules: Rules) -> None:
    stay = park("2026-03-02 10:00:00", *GOLF, minutes=12)
    bogus = fix("2026-03-02 10:05:30", 31.0, 120.5, 0, acc=False, valid=False)  # far outside
    result = run(
        rules, sorted([*stay, bogus], key=lambda f: f.ts) + drive("2026-03-02 10:13:00", *GOLF, minutes=2)
    )
    assert not of_type(result, AlertType.OUT_OF_AREA)
    assert len(of_type(result, AlertType.PRIVATE_DESTINATION)) == 1


# ---------------------------------------------------------------------------------- dedup, reorder, late


def test_duplicates_are_dropped(rules: Rules) -> None:
    fixes = drive("2026-03-07 10:00:00", *HOME, minutes=10)
    result = run(rules, [f for f in fixes for _ in (0, 1)])
    assert result.duplicates == len(fixes)
    assert len(of_type(result, AlertType.OFF_HOURS)) == 1


def test_late_upload_beyond_lateness_is_re_evaluated_and_retracts_the_offline_alert(rules: Rules) -> None:
    before = drive("2026-03-02 10:00:00", *HOME, minutes=2)
    gap = drive("2026-03-02 10:02:30", 32.0, before[-1].lon, minutes=19)  # buffered in the terminal
    after = drive("2026-03-02 10:22:00", 32.0, gap[-1].lon, minutes=20)
    ctx = context(rules)
    state = None
    seen = []
    for f in before + after + gap:  # the buffer is uploaded after 20 min of live fixes
        state, events = process(state, f, ctx)
        seen.extend(events)
    kinds = [e.kind for e in seen]
    assert EventKind.RETRACT in kinds
    retracted = {e.key for e in seen if e.kind is EventKind.RETRACT}
    offline = [
        e
        for e in seen
        if e.kind is EventKind.ALERT and e.record is not None and e.record.type is AlertType.OFFLINE
    ]
    assert offline and {e.key for e in offline} <= retracted
    assert state is not None and state.reevaluated == len(gap)


def test_fix_older_than_the_horizon_is_reported_not_dropped(rules: Rules) -> None:
    ctx = context(rules)
    ctx.late_horizon_seconds = 1800
    state = None
    for f in drive("2026-03-02 10:00:00", *HOME, minutes=120, step_s=60):
        state, _ = process(state, f, ctx)
    state, events = process(state, fix("2026-03-02 10:00:30", *HOME), ctx)
    [late] = events
    assert late.kind is EventKind.LATE_FIX
    assert "horizon" in late.detail["reason"]
    assert state.unapplied == 1


# ------------------------------------------------------------------------- state, calendar, CLI


def _restored_mid_run(rules: Rules, restore: Callable[[VehicleState], VehicleState]) -> None:
    from streams.core import DetectionResult, flush

    fixes = drive("2026-03-07 10:00:00", *HOME, minutes=10) + park("2026-03-07 10:10:30", *GOLF, minutes=20)
    straight = run(rules, fixes)
    ctx = context(rules)
    result = DetectionResult()
    state = None
    for i, f in enumerate(fixes):
        if i % 7 == 3:
            assert state is not None
            state = restore(state)
        state, events = process(state, f, ctx)
        result.apply(events)
    assert state is not None
    result.apply(flush(state, ctx))
    assert [a.to_dict() for a in result.sorted_alerts()] == [a.to_dict() for a in straight.sorted_alerts()]
    assert [t.to_dict() for t in result.sorted_trips()] == [t.to_dict() for t in straight.sorted_trips()]
    assert len(straight.alerts) == 2  # off_hours + private_destination


def test_state_pickles_mid_run_and_continues_identically(rules: Rules) -> None:
    import pickle

    _restored_mid_run(rules, lambda st: pickle.loads(pickle.dumps(st)))


def test_persisted_state_restored_mid_run_continues_identically(rules: Rules) -> None:
    """What a worker does: store dump_state() after each fix, load it before the next."""
    from streams.core import dump_state, load_state

    _restored_mid_run(rules, lambda st: load_state(dump_state(st)))


def test_an_uncovered_date_makes_off_hours_undetermined_and_everything_else_goes_on(rules: Rules) -> None:
    # 2027 is not in chinese_calendar (nor in rules.yaml): a Saturday drive + a golf visit.
    fixes = drive("2027-03-06 10:00:00", *HOME, minutes=10) + park("2027-03-06 10:10:30", *GOLF, minutes=20)
    result = run(rules, fixes)
    assert len(result.trips) == 1  # the trip is still found ...
    assert not of_type(result, AlertType.OFF_HOURS)  # ... but whether it was off-hours is unknown
    assert len(of_type(result, AlertType.PRIVATE_DESTINATION)) == 1  # other detectors go on
    [report] = result.calendar_missing.values()
    assert (report["year"], report["date"], report["vehicle_id"]) == (2027, "2027-03-06", fixes[0].vehicle_id)
    assert "calendar.years.2027" in report["reason"]
    assert result.missing_years() == [2027]


def test_flush_until_releases_held_fixes_for_an_idle_vehicle(rules: Rules) -> None:
    from streams.core import flush

    ctx = context(rules)
    state = None
    fixes = drive("2026-03-07 10:00:00", *HOME, minutes=10) + park("2026-03-07 10:10:30", *GOLF, minutes=6)
    for f in fixes:
        state, _ = process(state, f, ctx)
    assert state is not None and state.buffer  # the last 10 min wait for the watermark
    events = flush(state, ctx, until=ts("2026-03-07 10:20:00"))
    assert not state.buffer
    assert [e.kind for e in events if e.kind is EventKind.TRIP] == [EventKind.TRIP]


def test_late_fix_that_moves_a_trip_start_retracts_the_old_trip(rules: Rules) -> None:
    ctx = context(rules)
    state = None
    first = fix("2026-03-02 09:59:30", *HOME)  # arrives 40 min late, before the trip's first fix
    fixes = drive("2026-03-02 10:00:00", *HOME, minutes=10) + park(
        "2026-03-02 10:10:30", 32.0, 118.77, minutes=30
    )
    seen = []
    for f in [*fixes, first]:
        state, events = process(state, f, ctx)
        seen.extend(events)
    trips = [e for e in seen if e.kind is EventKind.TRIP]
    retracts = [e for e in seen if e.kind is EventKind.RETRACT]
    assert [t.record.start for t in trips] == [ts("2026-03-02 10:00:00"), ts("2026-03-02 09:59:30")]  # type: ignore[union-attr]
    assert [r.key for r in retracts] == [trips[0].key]


def test_a_restarted_sequence_is_not_mistaken_for_duplicates(rules: Rules) -> None:
    before = [fix(f"2026-03-07 10:00:{s:02d}", *HOME, seq=i) for i, s in enumerate((0, 10, 20))]
    after_reboot = [fix(f"2026-03-07 10:01:{s:02d}", *HOME, seq=i) for i, s in enumerate((0, 10, 20))]
    ctx = context(rules)
    state = None
    for f in before + after_reboot + before[:1]:
        state, _ = process(state, f, ctx)
    assert state is not None
    assert (state.duplicates, state.seq_resets) == (1, 3)


def test_a_restored_state_reports_a_fix_older_than_its_restore_point(rules: Rules) -> None:
    """No replay history after load_state: a late fix before the restore point is reported."""
    from streams.core import dump_state, load_state

    ctx = context(rules)
    state = None
    for f in drive("2026-03-02 10:00:00", *HOME, minutes=30):
        state, _ = process(state, f, ctx)
    assert state is not None and state.history.rows  # replay history in memory ...
    restored = load_state(dump_state(state))
    assert not restored.history.rows  # ... not persisted
    assert [e[3] for e in restored.buffer] == [e[3] for e in sorted(state.buffer, key=lambda e: e[:3])]
    restored, events = process(restored, fix("2026-03-02 10:05:05", *HOME), ctx)
    [late] = events
    assert late.kind is EventKind.LATE_FIX and "restore point" in late.detail["reason"]
    assert restored.unapplied == 1


def test_a_restored_state_drops_a_replay_of_the_fixes_it_holds(rules: Rules) -> None:
    """What a worker restarted after kill -9 does: the state comes back from the changelog and
    the telemetry is read again from the committed offset, before the state's last fix. Every
    fix the state holds already, the last released one included, is a duplicate."""
    import dataclasses
    from datetime import timedelta

    from streams.core import DetectionResult, dump_state, flush, load_state

    regular = drive("2026-03-07 10:00:00", *HOME, minutes=10) + park("2026-03-07 10:10:30", *GOLF, minutes=20)
    # a terminal's clock is not regular: the last released fix then lies before the window
    fixes = [dataclasses.replace(f, ts=f.ts + timedelta(seconds=i * 7 % 13)) for i, f in enumerate(regular)]
    straight = run(rules, fixes)
    for cut in range(1, len(fixes)):
        ctx = context(rules)
        result = DetectionResult()
        state = None
        for f in fixes[:cut]:
            state, events = process(state, f, ctx)
            result.apply(events)
        assert state is not None
        state = load_state(dump_state(state))
        for f in fixes:
            state, events = process(state, f, ctx)
            result.apply(e for e in events if e.kind is not EventKind.LATE_FIX)
        result.apply(flush(state, ctx))
        assert [t.to_dict() for t in result.sorted_trips()] == [t.to_dict() for t in straight.sorted_trips()]
        assert [a.to_dict() for a in result.sorted_alerts()] == [
            a.to_dict() for a in straight.sorted_alerts()
        ]
