"""What the detection core emits: trips, alerts, retractions, exemptions and late-fix flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fleetwatch.records import Alert, Trip


class EventKind(StrEnum):
    TRIP = "trip"  # a closed trip (after noise filtering)
    ALERT = "alert"  # a new or updated alert (same alert_id = same alert: upsert)
    RETRACT = "retract"  # a trip or alert emitted earlier is withdrawn (late data changed it)
    EXEMPTED = "exempted"  # a violation an approved dispatch order covers (audit trail, no alert)
    LATE_FIX = "late_fix"  # a fix too late even for re-evaluation: reported, not applied
    #: operational: a date the work calendar does not cover; off-hours for that vehicle-day is
    #: undetermined (every other detector goes on). key "calendar_missing:<vehicle>:<date>".
    CALENDAR_MISSING = "calendar_missing"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    key: str  # trip_id / alert_id (for EXEMPTED: "exempt:" + alert_id)
    record: Trip | Alert | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "key": self.key}
        if self.record is not None:
            out["record"] = self.record.to_dict()
        if self.detail:
            out["detail"] = self.detail
        return out


def trip_event(trip: Trip) -> Event:
    return Event(EventKind.TRIP, trip.trip_id, trip)


def alert_event(alert: Alert) -> Event:
    return Event(EventKind.ALERT, alert.alert_id, alert)
