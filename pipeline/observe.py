"""What the running pipeline is doing, read from the outside: Kafka end offsets and each consumer
group's committed offsets (rates and lags), and the database's counts (alerts, notifications)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from rich.console import Group
from rich.table import Table

from fleetwatch import topics
from fleetwatch.kafka_io import make_consumer
from fleetwatch.settings import Settings
from pipeline.supervisor import Health
from store.db import connect


#: Which topics each of the pipeline's consumer groups reads (the services' defaults).
def default_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    return {
        settings.worker_app_id: (topics.TELEMETRY, topics.ORDERS),
        settings.sink_group: (
            topics.TELEMETRY,
            topics.ORDERS,
            topics.TRIPS,
            topics.ALERTS,
            topics.VEHICLE_STATE,
        ),
        settings.notify_group: (topics.ALERTS,),
    }


@dataclass
class Sample:
    at: float
    #: topic -> sum of its partitions' end offsets
    ends: dict[str, int]
    #: (group, topic) -> sum of committed offsets (a partition never committed counts as 0)
    committed: dict[tuple[str, str], int]
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (type, severity), not retracted
    notifications: Counter[str] = field(default_factory=Counter)  # delivery status
    positions: int = 0

    def lag(self, group: str, topic: str) -> int:
        return max(0, self.ends.get(topic, 0) - self.committed.get((group, topic), 0))


class Observer:
    """Samples the pipeline. One consumer per group, never subscribed: it only reads offsets."""

    def __init__(self, settings: Settings, groups: Mapping[str, Sequence[str]] | None = None) -> None:
        self.settings = settings
        self.groups = dict(groups or default_groups(settings))
        self._topics = sorted({t for ts in self.groups.values() for t in ts})
        self._consumers = {g: make_consumer(settings, group_id=g) for g in self.groups}
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._db: Any = None

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()
        if self._db is not None:
            self._db.close()

    def _parts(self, topic: str) -> list[TopicPartition]:
        if topic not in self._partitions:
            consumer = next(iter(self._consumers.values()))
            numbers = consumer.partitions_for_topic(topic) or set()
            self._partitions[topic] = [TopicPartition(topic, p) for p in sorted(numbers)]
        return self._partitions[topic]

    def sample(self, with_db: bool = True) -> Sample:
        probe = next(iter(self._consumers.values()))
        every = [tp for t in self._topics for tp in self._parts(t)]
        ends: dict[str, int] = Counter()
        for tp, offset in probe.end_offsets(every).items():
            ends[tp.topic] += offset
        committed: dict[tuple[str, str], int] = {}
        for group, group_topics in self.groups.items():
            consumer = self._consumers[group]
            for topic in group_topics:
                committed[(group, topic)] = sum(consumer.committed(tp) or 0 for tp in self._parts(topic))
        sample = Sample(time.monotonic(), dict(ends), committed)
        if with_db:
            self._read_db(sample)
        return sample

    def _read_db(self, sample: Sample) -> None:
        if self._db is None:
            self._db = connect(self.settings, autocommit=True)
        db = self._db
        for kind, severity, n in db.execute(
            "SELECT type, severity, count(*) FROM alerts WHERE status <> 'retracted' GROUP BY 1, 2"
        ):
            sample.alerts[(kind, severity)] = n
        for status, n in db.execute("SELECT status, count(*) FROM notify_deliveries GROUP BY 1"):
            sample.notifications[status] = n
        row = db.execute("SELECT count(*) FROM positions").fetchone()
        sample.positions = row[0] if row else 0


def rate(new: Sample, old: Sample | None, value: int, old_value: int) -> float:
    if old is None or new.at <= old.at:
        return 0.0
    return max(0, value - old_value) / (new.at - old.at)


def live_view(
    settings: Settings, new: Sample, old: Sample | None, header: str, services: Table | None = None
) -> Group:
    """Fixes/s per stage, lag per group and topic, alerts by type and severity, notifications."""
    worker, sink, notify = settings.worker_app_id, settings.sink_group, settings.notify_group
    stages = Table(title="fixes per second, per stage", title_justify="left")
    for col in ("stage", "fixes/s", "total"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    rows = [
        ("bridge → Kafka", new.ends.get(topics.TELEMETRY, 0),
         old.ends.get(topics.TELEMETRY, 0) if old else 0),
        ("worker (committed)", new.committed.get((worker, topics.TELEMETRY), 0),
         old.committed.get((worker, topics.TELEMETRY), 0) if old else 0),
        ("sink → positions (committed)", new.committed.get((sink, topics.TELEMETRY), 0),
         old.committed.get((sink, topics.TELEMETRY), 0) if old else 0),
    ]  # fmt: skip
    for name, value, before in rows:
        stages.add_row(name, f"{rate(new, old, value, before):,.0f}", f"{value:,}")
    stages.add_row("positions rows", f"{rate(new, old, new.positions, old.positions if old else 0):,.0f}",
                   f"{new.positions:,}")  # fmt: skip

    lags = Table(title="consumer lag (records)", title_justify="left")
    for col in ("group", "topic", "lag"):
        lags.add_column(col, justify="right" if col == "lag" else "left")
    for (group, topic), _committed in sorted(new.committed.items()):
        lag = new.lag(group, topic)
        lags.add_row(group, topic.removeprefix("fleetwatch.").removesuffix(".v1"),
                     f"[{'green' if lag == 0 else 'yellow'}]{lag:,}[/]")  # fmt: skip

    alerts = Table(title="alerts (not retracted)", title_justify="left")
    for col in ("type", "yellow", "red"):
        alerts.add_column(col, justify="left" if col == "type" else "right")
    for kind in sorted({k for k, _ in new.alerts}):
        alerts.add_row(kind, str(new.alerts.get((kind, "yellow"), 0)), str(new.alerts.get((kind, "red"), 0)))
    sent = new.notifications.get("sent", 0)
    others = ", ".join(f"{s} {n}" for s, n in sorted(new.notifications.items()) if s != "sent")
    notes = (
        f"notifications sent: {sent}" + (f" ({others})" if others else "") + f"   notifier group: {notify}"
    )
    parts: list[Any] = [header, stages, lags, alerts, notes]
    if services is not None:
        parts.insert(1, services)
    return Group(*parts)


def health_table(rows: list[Health], title: str = "services") -> Table:
    table = Table(title=title)
    for col in ("service", "state", "pid", "restarts", "up", "last exit"):
        table.add_column(col, justify="right" if col in ("pid", "restarts", "up") else "left")
    colour = {
        "running": "green",
        "starting": "cyan",
        "backoff": "yellow",
        "crash-loop": "red",
        "stopped": "dim",
    }
    for h in rows:
        table.add_row(
            h.name, f"[{colour[h.state.value]}]{h.state.value}[/]", str(h.pid or "-"), str(h.restarts),
            f"{h.uptime_s:.0f} s" if h.pid else "-", "-" if h.last_exit is None else str(h.last_exit),
        )  # fmt: skip
    return table
