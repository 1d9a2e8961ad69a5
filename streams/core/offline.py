"""Offline replay: run the core over a sequence of raw fix lines, exactly as the workers do.

Each line goes through `parse_fix` (failures become dead letters with the reason) and then
`pipeline.process` for its vehicle; at the end every vehicle is flushed. Emitted events are
folded into the final set of trips and alerts (upsert by id, RETRACT removes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fleetwatch.records import Alert, ContractError, Trip, parse_fix
from fleetwatch.settings import MAX_FUTURE_SECONDS, MAX_SPEED_KMH
from streams.core.context import Context
from streams.core.events import Event, EventKind
from streams.core.pipeline import VehicleState, flush, process


@dataclass
class DeadLetter:
    line_no: int
    raw: str
    error: ContractError

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line_no, "raw": self.raw, **self.error.as_dict()}


@dataclass
class DetectionResult:
    trips: dict[str, Trip] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    exempted: dict[str, dict[str, Any]] = field(default_factory=dict)
    late: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    dead_letter_codes: Counter[str] = field(default_factory=Counter)
    lines: int = 0
    fixes: int = 0
    duplicates: int = 0
    seq_resets: int = 0
    reevaluated: int = 0
    retractions: int = 0
    outliers: int = 0  # fixes whose position the screen found implausible (kept, not used for place)
    #: operational reports by key ("calendar_missing:<vehicle>:<date>"): off-hours undetermined
    calendar_missing: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, VehicleState] = field(default_factory=dict)

    def apply(self, events: Iterable[Event]) -> None:
        for e in events:
            if e.kind is EventKind.TRIP and isinstance(e.record, Trip):
                self.trips[e.key] = e.record
            elif e.kind is EventKind.ALERT and isinstance(e.record, Alert):
                self.alerts[e.key] = e.record
                self.exempted.pop("exempt:" + e.key, None)
            elif e.kind is EventKind.EXEMPTED:
                self.exempted[e.key] = e.detail
            elif e.kind is EventKind.RETRACT:
                self.retractions += 1
                self.trips.pop(e.key, None)
                self.alerts.pop(e.key, None)
            elif e.kind is EventKind.LATE_FIX:
                self.late.append(e)
            elif e.kind is EventKind.CALENDAR_MISSING:
                self.calendar_missing[e.key] = e.detail

    def missing_years(self) -> list[int]:
        return sorted({int(d["year"]) for d in self.calendar_missing.values()})

    def sorted_alerts(self) -> list[Alert]:
        return sorted(self.alerts.values(), key=lambda a: (a.start, a.vehicle_id, a.type.value))

    def sorted_trips(self) -> list[Trip]:
        return sorted(self.trips.values(), key=lambda t: (t.start, t.vehicle_id))


def detect_lines(
    lines: Iterable[str | bytes],
    ctx: Context,
    *,
    now: datetime | None = None,
    check_future: bool = True,
    max_future: timedelta = timedelta(seconds=MAX_FUTURE_SECONDS),
    max_speed_kmh: float = MAX_SPEED_KMH,
) -> DetectionResult:
    """Run detection over raw JSON lines (blank lines are skipped, bad ones dead-lettered);
    the contract's limits come from the caller's settings."""
    result = DetectionResult()
    states = result.states
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        result.lines += 1
        try:
            clock = now if check_future else _NO_FUTURE_CHECK
            fix = parse_fix(raw, now=clock, max_future=max_future, max_speed_kmh=max_speed_kmh)
        except ContractError as exc:
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            result.dead_letters.append(DeadLetter(line_no, text.rstrip("\n"), exc))
            result.dead_letter_codes[exc.code] += 1
            continue
        result.fixes += 1
        state, events = process(states.get(fix.vehicle_id), fix, ctx)
        states[fix.vehicle_id] = state
        result.apply(events)
    for state in states.values():
        result.apply(flush(state, ctx))
        result.duplicates += state.duplicates
        result.seq_resets += state.seq_resets
        result.reevaluated += state.reevaluated
        result.outliers += state.outliers
    return result


# A receiver clock far in the future disables the "stamped in the future" check for audits of
# recorded data whose capture clock is unknown.
_NO_FUTURE_CHECK = datetime(9999, 1, 1).astimezone()
