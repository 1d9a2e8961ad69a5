"""Fold a changes topic (upserts and retractions with revisions) into its final records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fleetwatch.kafka_io import read_topic
from fleetwatch.records import Alert, Change, ChangeOp, Trip, parse_change
from fleetwatch.settings import Settings


@dataclass
class Folded:
    latest: dict[str, Change] = field(default_factory=dict)
    changes: int = 0

    def apply(self, changes: Iterable[Change]) -> None:
        for c in changes:
            self.changes += 1
            held = self.latest.get(c.id)
            # Highest revision wins; on a tie the later record (a re-emission after a restart).
            if held is None or c.revision >= held.revision:
                self.latest[c.id] = c

    def alerts(self) -> dict[str, Alert]:
        return {
            k: c.record
            for k, c in self.latest.items()
            if c.op is ChangeOp.UPSERT and isinstance(c.record, Alert)
        }

    def trips(self) -> dict[str, Trip]:
        return {
            k: c.record
            for k, c in self.latest.items()
            if c.op is ChangeOp.UPSERT and isinstance(c.record, Trip)
        }

    def retracted(self) -> dict[str, Change]:
        return {k: c for k, c in self.latest.items() if c.op is ChangeOp.RETRACT}


def fold_topic(
    settings: Settings, topic: str, since: dict[int, int] | None, vehicles: set[str] | None = None
) -> Folded:
    folded = Folded()
    changes = [parse_change(r.value) for r in read_topic(settings, topic, since=since, timeout_s=60)]
    folded.apply(c for c in changes if vehicles is None or c.vehicle_id in vehicles)
    return folded
