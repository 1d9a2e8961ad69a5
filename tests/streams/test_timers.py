"""Wall-clock checks (streams.core.timers) with hand-written timestamps and a hand-driven clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleetwatch.records import AlertType, alert_id_for
from geofence import Rules
from streams.core import EventKind, process
from streams.core.pipeline import VehicleState
from streams.core.timers import TimerState, process_with_timers, tick
from tests.streams.helpers import drive, park
from tests.streams.world import DEPOT, VEHICLE, context, order, ts


def _feed(rules: Rules, fixes: list, orders: list | None = None) -> tuple[VehicleState, TimerState, object]:
    ctx = context(rules, orders)
    state = None
    for f in fixes:
        state, _ = process(state, f, ctx)
    assert state is not None
    return state, TimerState(), ctx


def test_silent_terminal_gets_an_open_offline_alert_after_offline_after_seconds(rules: Rules) -> None:
    fixes = drive("2026-03-04 10:00:00", 32.0, 118.75, minutes=10)
    state, timers, ctx = _feed(rules, fixes)
    last = fixes[-1].ts
    # 899 s of silence: released, but not yet offline.
    events = tick(state, timers, ctx, last + timedelta(seconds=899))  # type: ignore[arg-type]
    assert [e for e in events if e.kind is EventKind.ALERT and e.record.type is AlertType.OFFLINE] == []  # type: ignore[union-attr]
    events = tick(state, timers, ctx, last + timedelta(seconds=901))  # type: ignore[arg-type]
    offline = [e.record for e in events if e.kind is EventKind.ALERT]
    assert len(offline) == 1
    alert = offline[0]
    assert alert.type is AlertType.OFFLINE and alert.start == last and alert.end is None  # type: ignore[union-attr]
    assert alert.alert_id == alert_id_for(AlertType.OFFLINE, VEHICLE, last)  # type: ignore[union-attr]
    assert alert.raised_at == last + timedelta(seconds=900)  # type: ignore[union-attr]
    # Still silent: not raised twice.
    assert tick(state, timers, ctx, last + timedelta(seconds=960)) == []  # type: ignore[arg-type]


def test_terminal_reporting_again_confirms_the_timer_alert_with_its_end(rules: Rules) -> None:
    fixes = drive("2026-03-04 10:00:00", 32.0, 118.75, minutes=10)
    state, timers, ctx = _feed(rules, fixes)
    last = fixes[-1].ts
    tick(state, timers, ctx, last + timedelta(seconds=901))  # type: ignore[arg-type]
    back = drive("2026-03-04 10:40:00", 32.0, 118.80, minutes=15)
    events = []
    for f in back:
        state, out = process_with_timers(state, timers, f, ctx)  # type: ignore[arg-type]
        events += out
    events += tick(state, timers, ctx, back[-1].ts + timedelta(seconds=601))  # type: ignore[arg-type]
    same = alert_id_for(AlertType.OFFLINE, VEHICLE, last)
    confirmed = [e for e in events if e.key == same]
    assert [e.kind for e in confirmed] == [EventKind.ALERT]
    assert confirmed[0].record.end == back[0].ts  # type: ignore[union-attr]
    assert timers.raised == {}


def test_late_upload_that_fills_the_gap_retracts_the_timer_alert(rules: Rules) -> None:
    fixes = drive("2026-03-04 10:00:00", 32.0, 118.75, minutes=10)
    state, timers, ctx = _feed(rules, fixes)
    last = fixes[-1].ts
    tick(state, timers, ctx, last + timedelta(seconds=901))  # type: ignore[arg-type]
    # The terminal had buffered its fixes: they arrive now, every 30 s, no gap at all.
    upload = drive("2026-03-04 10:10:30", 32.0, 118.80, minutes=20)
    events = []
    for f in upload:
        state, out = process_with_timers(state, timers, f, ctx)  # type: ignore[arg-type]
        events += out
    events += tick(state, timers, ctx, upload[-1].ts + timedelta(seconds=601))  # type: ignore[arg-type]
    retracts = [e for e in events if e.kind is EventKind.RETRACT]
    assert [(e.key, e.detail["reason"]) for e in retracts] == [
        (alert_id_for(AlertType.OFFLINE, VEHICLE, last), "not_confirmed")
    ]


def test_depot_night_fires_at_the_check_time_without_any_fix(rules: Rules) -> None:
    # Parked for the night away from the depot (about 5 km east of it), ignition off.
    fixes = park("2026-03-04 19:30:00", DEPOT[0], DEPOT[1] + 0.05, minutes=30)
    state, timers, ctx = _feed(rules, fixes)
    check = ts("2026-03-05 02:00:00")
    assert tick(state, timers, ctx, check - timedelta(seconds=1)) == []  # type: ignore[arg-type]
    events = tick(state, timers, ctx, check + timedelta(seconds=1))  # type: ignore[arg-type]
    alerts = [e.record for e in events if e.kind is EventKind.ALERT]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.type is AlertType.DEPOT_NIGHT and alert.start == alert.end == check  # type: ignore[union-attr]
    assert tick(state, timers, ctx, check + timedelta(minutes=5)) == []  # type: ignore[arg-type]
    # Morning: the vehicle reports from the depot; the core raises the same alert (same id).
    morning = park("2026-03-05 07:30:00", DEPOT[0], DEPOT[1], minutes=2, acc=True)
    events = []
    for f in morning:
        state, out = process_with_timers(state, timers, f, ctx)  # type: ignore[arg-type]
        events += out
    events += tick(state, timers, ctx, morning[-1].ts + timedelta(seconds=601))  # type: ignore[arg-type]
    assert [e.kind for e in events if e.key == alert.alert_id] == [EventKind.ALERT]  # type: ignore[union-attr]
    assert timers.raised == {}


def test_depot_night_at_check_time_respects_an_order_spanning_it(rules: Rules) -> None:
    fixes = park("2026-03-04 19:30:00", DEPOT[0], DEPOT[1] + 0.05, minutes=30)
    away = order("o-night", "2026-03-04 19:00:00", "2026-03-05 09:00:00")
    state, timers, ctx = _feed(rules, fixes, [away])
    assert tick(state, timers, ctx, datetime.fromisoformat("2026-03-05T02:00:30+08:00")) == []  # type: ignore[arg-type]
