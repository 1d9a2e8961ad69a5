"""Scoring alerts against ground truth (docs/world-format.md): per-type precision and recall.

An alert matches a truth line when type and vehicle are equal and the spans overlap with
`TOLERANCE` either side (an alert without an end is a point at its start). Truth lines with
`"expect": false` are must-not spans: any alert of that type and vehicle overlapping one is a
false alarm, whatever else it matches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from fleetwatch.records import Alert, AlertType, ContractError, parse_alert, parse_timestamp

TOLERANCE = timedelta(seconds=120)


@dataclass(frozen=True, slots=True)
class TruthLine:
    line_no: int
    type: str
    vehicle_id: str
    start: datetime
    end: datetime
    expect: bool
    scenario: str
    note: str


@dataclass
class TypeScore:
    type: str
    expected: int = 0  # truth lines with expect true
    must_not: int = 0  # truth lines with expect false
    alerts: int = 0
    true_alerts: int = 0
    found: int = 0  # expected lines matched by at least one alert
    extra_per_violation: int = 0  # alerts beyond the first matching the same truth line

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.found / self.expected if self.expected else None


@dataclass
class FalseAlarm:
    alert: Alert
    reason: str


@dataclass
class ScoreReport:
    by_type: dict[str, TypeScore] = field(default_factory=dict)
    misses: list[TruthLine] = field(default_factory=list)
    false_alarms: list[FalseAlarm] = field(default_factory=list)

    def row(self, kind: str) -> TypeScore:
        if kind not in self.by_type:
            self.by_type[kind] = TypeScore(kind)
        return self.by_type[kind]


class TruthError(ValueError):
    pass


def parse_truth(lines: Iterable[str | bytes], source: str = "truth.jsonl") -> list[TruthLine]:
    out = []
    for no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj: dict[str, Any] = orjson.loads(raw)
            kind = obj["type"]
            AlertType(kind)
            start = parse_timestamp(obj["start"], "start")
            end = parse_timestamp(obj.get("end") or obj["start"], "end")
            out.append(
                TruthLine(
                    no,
                    kind,
                    str(obj["vehicle_id"]),
                    start,
                    end,
                    bool(obj.get("expect", True)),
                    str(obj.get("scenario", "")),
                    str(obj.get("note", "")),
                )
            )
        except (orjson.JSONDecodeError, KeyError, ValueError, ContractError) as exc:
            raise TruthError(f"{source}:{no}: {exc}") from None
    return out


def parse_alerts(lines: Iterable[str | bytes], source: str = "alerts.jsonl") -> list[Alert]:
    alerts: dict[str, Alert] = {}
    for no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            alert = parse_alert(raw)
        except ContractError as exc:
            raise TruthError(f"{source}:{no}: {exc}") from None
        alerts[alert.alert_id] = alert  # a later line with the same id is an update
    return list(alerts.values())


def _overlaps(alert: Alert, truth: TruthLine) -> bool:
    a_end = alert.end or alert.start
    return alert.start <= truth.end + TOLERANCE and truth.start - TOLERANCE <= a_end


def score(truth: list[TruthLine], alerts: list[Alert]) -> ScoreReport:
    report = ScoreReport()
    index: dict[tuple[str, str], list[TruthLine]] = {}
    for t in truth:
        index.setdefault((t.type, t.vehicle_id), []).append(t)
        row = report.row(t.type)
        if t.expect:
            row.expected += 1
        else:
            row.must_not += 1
    matched: dict[int, int] = {}
    for alert in sorted(alerts, key=lambda a: (a.start, a.vehicle_id)):
        row = report.row(alert.type.value)
        row.alerts += 1
        lines = index.get((alert.type.value, alert.vehicle_id), [])
        positives = [t for t in lines if t.expect and _overlaps(alert, t)]
        negatives = [t for t in lines if not t.expect and _overlaps(alert, t)]
        for t in positives:
            matched[t.line_no] = matched.get(t.line_no, 0) + 1
        if negatives:
            n = negatives[0]
            report.false_alarms.append(FalseAlarm(alert, f"inside a must-not span ({n.scenario}: {n.note})"))
        elif not positives:
            report.false_alarms.append(FalseAlarm(alert, "matches no truth line"))
        else:
            row.true_alerts += 1
    for t in truth:
        if not t.expect:
            continue
        hits = matched.get(t.line_no, 0)
        if hits:
            report.row(t.type).found += 1
            report.row(t.type).extra_per_violation += hits - 1
        else:
            report.misses.append(t)
    return report
