"""Test-side tools for the sink: fixes, producing to scratch topics, running the sink, counting rows."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fleetwatch.kafka_io import create_topic, make_producer
from fleetwatch.records import Alert, Fix, Severity, Trip
from fleetwatch.settings import Settings
from simulator._world import Vehicle
from sink.registry import make_sinks
from sink.runner import SinkRunner, SinkStats
from store.db import connect
from store.registry import DeviceRow, OrgRow, VehicleRow, upsert_registry
from tests.ingest.helpers import wait_for
from tests.service import ServiceProcess

__all__ = ["wait_for"]  # re-exported: the ingest tests' poller serves here too


def fixes(tag: str, vehicles: int, per_vehicle: int, *, start: datetime | None = None) -> list[Fix]:
    """``vehicles`` x ``per_vehicle`` valid fixes of devices named after ``tag``, 10 s apart."""
    t0 = start or datetime.now(UTC) - timedelta(hours=6)
    return [
        Fix(device_id=f"d{tag}-{v}", vehicle_id=f"V{tag[:6]}{v:03d}", ts=t0 + timedelta(seconds=10 * i),
            lat=32.0 + i * 1e-5, lon=118.7 + v * 1e-3, speed_kmh=40.0, heading=90.0, acc=True, seq=i)
        for v in range(vehicles) for i in range(per_vehicle)
    ]  # fmt: skip


def scratch_topic(settings: Settings, name: str, partitions: int = 3) -> str:
    create_topic(settings, name, partitions)
    return name


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = make_producer(settings, client_id="fw-test-sink-producer")
    count = 0
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
            count += 1
        producer.flush(60)
    finally:
        producer.close(10)
    return count


def run_sink(
    settings: Settings, overrides: dict[str, str], group: str, *, dlq: str, idle_exit_s: float = 3.0
) -> SinkStats:
    """The sink in this process over ``overrides`` (table -> topic) until idle."""
    runner = SinkRunner(settings, make_sinks(list(overrides), overrides), group=group, dlq_topic=dlq,
                        stop=threading.Event())  # fmt: skip
    return runner.run(idle_exit_s=idle_exit_s, progress_every_s=0)


def query(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def position_counts(settings: Settings, device_prefix: str) -> tuple[int, int]:
    """(rows, distinct (device_id, seq, ts)) of positions whose device starts with the prefix."""
    rows = query(
        settings,
        "SELECT count(*), count(DISTINCT (device_id, seq, ts)) FROM positions WHERE device_id LIKE %s",
        (device_prefix + "%",),
    )
    return int(rows[0][0]), int(rows[0][1])


class SinkProcess(ServiceProcess):
    """`fleetwatch sink` as a child process, so a test can SIGKILL it."""

    def __init__(self, log: Path, overrides: dict[str, str], group: str, dlq: str, **env: str) -> None:
        argv = ["sink", "--group", group, "--dlq-topic", dlq, "--log-interval", "2"]
        for table, topic in overrides.items():
            argv += ["--table", table, "--topic", f"{table}={topic}"]
        super().__init__(log, argv, ready="sink running", env=env, name="sink")


def start_group_at_end(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Commit ``group``'s offsets at the topic's current end, so a sink in that group only sees what
    comes next (the shared telemetry topic holds other tests' fixes)."""
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    from fleetwatch.kafka_io import make_consumer

    consumer = make_consumer(settings, group_id=group)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in ends.items()})
    finally:
        consumer.close(autocommit=False)
    return {tp.partition: off for tp, off in ends.items()}


class SinkThread:
    """The sink running in this process until stopped (for tests that watch it work live)."""

    def __init__(self, settings: Settings, overrides: dict[str, str], group: str, dlq: str) -> None:
        self.stop_event = threading.Event()
        self.runner = SinkRunner(settings, make_sinks(list(overrides), overrides), group=group, dlq_topic=dlq,
                                 stop=self.stop_event)  # fmt: skip
        self.thread = threading.Thread(target=self._run, name="sink", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.runner.run(progress_every_s=0)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> SinkThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(60)
        if self.error is not None:
            raise self.error


# The chain's registration and comparisons (tests/sink/test_chain_integration.py, tests/faults/).

AlertKey = tuple[str, str, datetime, datetime | None, str]
TripKey = tuple[str, datetime, datetime, int]


def alert_keys(alerts: Iterable[Alert]) -> set[AlertKey]:
    # An alert without a severity is stored yellow (as the sink does for alerts written before v1 had one).
    return {(a.alert_id, a.type.value, a.start, a.end, (a.severity or Severity.YELLOW).value) for a in alerts}


def trip_keys(trips: Iterable[Trip]) -> set[TripKey]:
    return {(t.trip_id, t.start, t.end, t.fix_count) for t in trips}


def register(settings: Settings, vehicles: list[Vehicle]) -> None:
    """The org tree, vehicles and devices of the world; rows an earlier run left for the same
    vehicles (plates repeat across namespaces) are removed, so only this run's output is compared."""
    ids = [v.vehicle_id for v in vehicles]
    units = {v.unit.org_id: v.unit for v in vehicles}
    with connect(settings) as conn:
        conn.execute("DELETE FROM alert_events WHERE alert_id IN "
                     "(SELECT alert_id FROM alerts WHERE vehicle_id = ANY(%s))", (ids,))  # fmt: skip
        conn.execute("DELETE FROM alerts WHERE vehicle_id = ANY(%s)", (ids,))
        conn.execute("DELETE FROM trips WHERE vehicle_id = ANY(%s)", (ids,))
        upsert_registry(
            conn,
            [OrgRow("js", "江苏省", None), *(OrgRow(c, c, "js") for c in {u.city for u in units.values()}),
             *(OrgRow(u.org_id, u.name, u.city) for u in units.values())],
            [VehicleRow(v.vehicle_id, v.org) for v in vehicles],
            [DeviceRow(v.device_id, v.vehicle_id) for v in vehicles],
        )  # fmt: skip


def stored_alerts(settings: Settings, vehicles: list[str]) -> set[AlertKey]:
    rows = query(settings, "SELECT alert_id, type, start_at, end_at, severity FROM alerts "
                 "WHERE vehicle_id = ANY(%s) AND status <> 'retracted'", (vehicles,))  # fmt: skip
    return {(r[0], r[1], r[2], r[3], r[4]) for r in rows}


def stored_trips(settings: Settings, vehicles: list[str]) -> set[TripKey]:
    rows = query(settings, "SELECT trip_id, start_at, end_at, fix_count FROM trips "
                 "WHERE vehicle_id = ANY(%s) AND NOT retracted", (vehicles,))  # fmt: skip
    return {(r[0], r[1], r[2], r[3]) for r in rows}
