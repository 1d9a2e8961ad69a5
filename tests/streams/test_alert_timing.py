"""Alert timing and grading: `raised_at` stable across updates, severity (三色预警) escalation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fleetwatch.records import ALERT_SLA, Alert, AlertType, Fix, Severity
from geofence import Rules, load_rules
from streams.core import EventKind, flush, process
from tests.streams.helpers import drive, park
from tests.streams.world import GOLF, RULES, context, ts, write_world


def _alert_events(rules: Rules, fixes: list[Fix], kind: AlertType) -> list[Alert]:
    """Every ALERT event of `kind`, in emission order (open, updates, final)."""
    ctx = context(rules)
    state = None
    seen = []
    for f in fixes:
        state, events = process(state, f, ctx)
        seen.extend(events)
    assert state is not None
    seen.extend(flush(state, ctx))
    return [e.record for e in seen if e.kind is EventKind.ALERT and isinstance(e.record, Alert)
            and e.record.type is kind]  # fmt: skip


def _golf_visit(minutes: float) -> list[Fix]:
    arrive = drive("2026-03-02 10:00:00", GOLF[0], GOLF[1] - 0.02, minutes=3, speed=40)
    stay = park("2026-03-02 10:03:30", *GOLF, minutes=minutes)
    leave_at = ts("2026-03-02 10:03:30") + timedelta(minutes=minutes, seconds=30)
    leave = drive(leave_at.strftime("%Y-%m-%d %H:%M:%S"), *GOLF, minutes=5, speed=40)
    return arrive + stay + leave


def test_a_visit_keeps_its_raise_time_through_every_update(rules: Rules) -> None:
    events = _alert_events(rules, _golf_visit(40), AlertType.PRIVATE_DESTINATION)
    qualified = ts("2026-03-02 10:13:30")  # arrival 10:03:30 + 10 min dwell
    assert len(events) == 3  # open (yellow), open again when it turns red, final
    assert {a.alert_id for a in events} == {events[0].alert_id}
    assert [a.raised_at for a in events] == [qualified] * 3
    assert [a.due for a in events] == [qualified + ALERT_SLA] * 3
    assert [a.end for a in events[:2]] == [None, None] and events[2].end is not None


def test_an_excursion_keeps_its_raise_time_not_its_end(rules: Rules) -> None:
    # East edge of the region is lon 119.00: out ~5 km, 40 min beyond, then back.
    out = drive("2026-03-02 09:30:00", 32.05, 118.97, minutes=10, speed=30)
    stay = park("2026-03-02 09:40:30", 32.05, out[-1].lon, minutes=40, step_s=60, acc=True)
    back = drive(
        "2026-03-02 10:21:00", 32.05, out[-1].lon, minutes=10, speed=30, dlon=-(out[1].lon - out[0].lon)
    )
    events = _alert_events(rules, out + stay + back, AlertType.OUT_OF_AREA)
    beyond = [f for f in out if (f.lon - 119.0) * 94_400 > 200]
    qualified = next(f.ts for f in beyond if f.ts - beyond[0].ts >= timedelta(seconds=60))
    assert {a.raised_at for a in events} == {qualified}
    final = events[-1]
    assert final.end is not None and final.end > qualified + timedelta(minutes=30)
    assert final.due == qualified + ALERT_SLA  # not slid to the excursion's end
    assert [a.severity for a in events] == [Severity.YELLOW, Severity.RED, Severity.RED]


def test_severity_rises_with_the_dwell_and_never_falls(rules: Rules) -> None:
    long_visit = _alert_events(rules, _golf_visit(40), AlertType.PRIVATE_DESTINATION)
    assert [a.severity for a in long_visit] == [Severity.YELLOW, Severity.RED, Severity.RED]
    short_visit = _alert_events(rules, _golf_visit(15), AlertType.PRIVATE_DESTINATION)
    assert [a.severity for a in short_visit] == [Severity.YELLOW, Severity.YELLOW]


def test_red_thresholds_are_per_org(tmp_path: Path) -> None:
    unit = "  - id: js.nj.u01\n    parent: js.nj\n"
    red_at_15_min = "    settings:\n      severity_red: {private_destination: 900}\n"
    strict_unit = RULES.replace(unit, unit + red_at_15_min)
    rules = load_rules(write_world(tmp_path, strict_unit))
    events = _alert_events(rules, _golf_visit(20), AlertType.PRIVATE_DESTINATION)
    assert [a.severity for a in events] == [Severity.YELLOW, Severity.RED, Severity.RED]


def test_off_hours_is_graded_by_distance_driven_outside_working_time(rules: Rules) -> None:
    short = drive("2026-03-07 10:00:00", 32.0, 118.62, minutes=10, speed=40)  # ~6.7 km: yellow
    long = drive("2026-03-07 14:00:00", 31.95, 118.62, minutes=40, step_s=60, speed=50)  # 33 km: red
    alerts = _alert_events(rules, short + long, AlertType.OFF_HOURS)
    assert [(a.severity, a.raised_at) for a in alerts] == [
        (Severity.YELLOW, short[-1].ts),
        (Severity.RED, long[-1].ts),
    ]
