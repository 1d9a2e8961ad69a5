"""The scoring rule: overlap with 120 s tolerance, must-not spans, per-type figures."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleetwatch.records import Alert, AlertType
from streams.core.scoring import TruthLine, score

T0 = datetime.fromisoformat("2026-03-07T10:00:00+08:00")


def alert(kind: AlertType, start_min: float, end_min: float | None, vehicle: str = "苏A1") -> Alert:
    end = T0 + timedelta(minutes=end_min) if end_min is not None else None
    return Alert.new(kind, vehicle, "org", T0 + timedelta(minutes=start_min), end, 32.0, 118.0, T0)


def truth(kind: str, start_min: float, end_min: float, expect: bool = True, no: int = 1) -> TruthLine:
    return TruthLine(
        no, kind, "苏A1", T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min), expect, "s", "n"
    )


def test_overlap_with_tolerance_matches_and_beyond_does_not() -> None:
    report = score([truth("off_hours", 0, 10)], [alert(AlertType.OFF_HOURS, 11.9, 20)])
    assert report.by_type["off_hours"].recall == 1.0 and report.by_type["off_hours"].precision == 1.0
    report = score([truth("off_hours", 0, 10)], [alert(AlertType.OFF_HOURS, 12.1, 20)])
    assert (
        report.by_type["off_hours"].recall == 0.0
        and len(report.misses) == 1
        and len(report.false_alarms) == 1
    )


def test_point_alert_and_other_vehicle_or_type_do_not_match() -> None:
    lines = [truth("depot_night", 0, 0)]
    assert score(lines, [alert(AlertType.DEPOT_NIGHT, 1, None)]).by_type["depot_night"].found == 1
    assert score(lines, [alert(AlertType.DEPOT_NIGHT, 0, 0, vehicle="苏A2")]).misses
    assert score(lines, [alert(AlertType.OVERSPEED, 0, 0)]).misses


def test_alert_in_a_must_not_span_is_a_false_alarm() -> None:
    report = score([truth("off_hours", 0, 10, expect=False)], [alert(AlertType.OFF_HOURS, 2, 8)])
    assert report.by_type["off_hours"].precision == 0.0
    assert report.by_type["off_hours"].recall is None
    assert "must-not" in report.false_alarms[0].reason


def test_two_alerts_for_one_violation_are_counted_as_extra() -> None:
    report = score(
        [truth("out_of_area", 0, 30)],
        [alert(AlertType.OUT_OF_AREA, 0, 10), alert(AlertType.OUT_OF_AREA, 15, 30)],
    )
    row = report.by_type["out_of_area"]
    assert row.found == 1 and row.extra_per_violation == 1
