"""`fleetwatch notify`'s loop: alerts topic -> delivery log (then commit offsets) -> send -> escalate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from kafka.consumer.fetcher import ConsumerRecord

from fleetwatch import topics
from fleetwatch.kafka_io import make_consumer
from fleetwatch.records import ContractError, parse_change
from fleetwatch.settings import Settings
from notify.channels import build_channel
from notify.config import Routing
from notify.escalation import escalate_overdue
from notify.outbox import Conn, Dispatcher, DispatchStats, alert_payload, enqueue_retraction, enqueue_upsert

log = logging.getLogger(__name__)


@dataclass
class NotifyStats:
    records: int = 0
    rejected: int = 0
    queued: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    escalated: int = 0
    rejections: list[str] = field(default_factory=list)

    def add(self, d: DispatchStats) -> None:
        self.sent += d.sent
        self.retried += d.retried
        self.failed += d.failed


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Notifier:
    settings: Settings
    routing: Routing
    clock: Callable[[], datetime] = utc_now
    stats: NotifyStats = field(default_factory=NotifyStats)

    def __post_init__(self) -> None:
        self.tz = ZoneInfo(self.settings.local_timezone)
        channels = {n: build_channel(spec, self.settings) for n, spec in self.routing.channels.items()}
        self.dispatcher = Dispatcher(self.settings, self.routing, channels)

    def take(self, conn: Conn, records: Iterable[ConsumerRecord]) -> None:
        """Turn alert changes into delivery rows in one transaction (the caller commits offsets after)."""
        now = self.clock()
        with conn.transaction():
            for record in records:
                self.stats.records += 1
                try:
                    change = parse_change(record.value, "alert")
                    if change.retracted or change.alert is None:
                        self.stats.queued += enqueue_retraction(
                            conn, self.routing, change.id, change.revision, change.reason, now, self.tz
                        )
                        continue
                    payload = alert_payload(change.alert, change.revision)
                except ContractError as exc:
                    # The sink dead-letters the same record with the same reason; here it is only skipped.
                    self.stats.rejected += 1
                    self.stats.rejections.append(f"{record.topic}[{record.partition}]@{record.offset}: {exc}")
                    log.warning("alert record %s@%s refused: %s", record.partition, record.offset, exc)
                    continue
                self.stats.queued += enqueue_upsert(conn, self.routing, payload, now, self.tz)

    def tick(self, conn: Conn) -> DispatchStats:
        result = self.dispatcher.dispatch_due(conn, self.clock())
        self.stats.add(result)
        return result

    def escalate(self, conn: Conn) -> int:
        done = escalate_overdue(conn, self.routing, self.clock(), self.tz)
        self.stats.escalated += len(done)
        return len(done)

    def run(
        self,
        conn: Conn,
        *,
        topic: str = topics.ALERTS,
        group: str | None = None,
        stop: threading.Event | None = None,
        idle_exit_s: float | None = None,
    ) -> NotifyStats:
        """Consume until ``stop`` is set (or nothing arrived and nothing was due for ``idle_exit_s``)."""
        stop = stop or threading.Event()
        consumer = make_consumer(self.settings, group_id=group or self.settings.notify_group, topics=(topic,),
                                 role="notifier")
        last_activity = time.monotonic()
        next_escalation = 0.0
        try:
            while not stop.is_set():
                batches = consumer.poll(timeout_ms=500, max_records=1000)
                records = [r for rs in batches.values() for r in rs]
                if records or not consumer.assignment():  # idle only counts once partitions are ours
                    last_activity = time.monotonic()
                if records:
                    self.take(conn, records)
                    consumer.commit()
                if time.monotonic() >= next_escalation:
                    if self.escalate(conn):
                        last_activity = time.monotonic()
                    next_escalation = time.monotonic() + self.settings.notify_escalate_every_seconds
                if self.tick(conn).sent:
                    last_activity = time.monotonic()
                if idle_exit_s is not None and time.monotonic() - last_activity > idle_exit_s:
                    break
        finally:
            consumer.close()
            self.dispatcher.close()
        return self.stats
