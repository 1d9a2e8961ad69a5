"""Demo data for the dashboards through the project's own path: simulator -> detection core ->
Kafka -> `fleetwatch sink` -> TimescaleDB.

The simulator's fleet (a labelled world) is registered (`db import-registry`'s path), its
fixes run through the detection core exactly as `fleetwatch detect` runs them, and the fixes,
dispatch orders, trips and alerts are produced to Kafka topics in the sink's formats and stored
by the sink (batched COPY + merge, as in production). Only MQTT and the bridge are skipped: the
fixes enter Kafka as the bridge would write them (value = the fix JSON, key = vehicle_id).

Trips and alerts go on their topics as the stream worker writes them (`Change` v1 upserts);
live vehicle state, which the worker keeps from wall-clock time, is folded here by
`vehicle_states` from the same fixes and alerts at a chosen instant, with the worker's rules (offline:
ignition on and silent longer than ``offline_after_seconds``; alerting: an alert episode open at
that instant; moving: ignition on and speed >= ``stationary_speed_kmh``; else parked).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetwatch.kafka_io import create_topic, delete_topic, make_producer
from fleetwatch.records import (
    Alert,
    Change,
    ChangeOp,
    Fix,
    VehicleStatus,
    VehicleStatusKind,
    parse_fix,
)
from fleetwatch.settings import Settings
from registry import DeviceEntry, register
from simulator._dataset import Dataset
from simulator._world import World, rules_document, write_world
from store.db import connect
from store.registry import OrgRow

#: Tables the demo loads, in the order their topics are produced.
TABLES = ("positions", "orders", "trips", "alerts", "vehicle_state")
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)

Progress = Callable[[str], None]


@dataclass
class DemoLoad:
    """What one load produced and stored."""

    produced: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    detect_seconds: float = 0.0
    produce_seconds: float = 0.0
    sink_seconds: float = 0.0
    sink_records_per_s: float = 0.0


def register_world(settings: Settings, world: World) -> tuple[int, int, int]:
    """Register a world's org tree, vehicles and devices the way `fleetwatch db import-registry` does
    (database and registry topic), without MQTT accounts: the demo's fixes skip MQTT."""
    doc = rules_document(world)
    done = register(
        settings,
        [DeviceEntry(v["device_id"], v["vehicle_id"], v["org"], v.get("depot")) for v in doc["vehicles"]],
        [OrgRow(o["id"], o["name"], o.get("parent")) for o in doc["orgs"]],
        mqtt_accounts=False,
    )
    return done.orgs, done.vehicles, done.devices


def detect(ds: Dataset) -> Any:
    """The detection core over the dataset's fixes, as `fleetwatch detect --no-future-check` runs it."""
    from geofence import load_rules
    from streams.core import Context, OrderBook, detect_lines

    with tempfile.TemporaryDirectory(prefix="fw-demo-world-") as tmp:
        write_world(ds.world, Path(tmp))
        rules = load_rules(Path(tmp) / "rules.yaml")
    book = OrderBook()
    for order in ds.orders:
        book.add(order)
    return detect_lines((m.payload for _, m in ds.messages()), Context(rules, book), check_future=False)


def vehicle_states(ds: Dataset, alerts: Iterable[Alert], at: datetime) -> list[VehicleStatus]:
    """Each vehicle's live-map record as of ``at`` (see the module docstring for the status rules)."""
    from geofence.rules import OrgSettings

    defaults = OrgSettings()
    newest: dict[str, Fix] = {}
    for _vehicle, m in ds.messages():
        if m.kind != "fix":
            continue
        fix = parse_fix(m.payload, now=_FAR_FUTURE)
        if fix.ts <= at and (fix.vehicle_id not in newest or fix.ts > newest[fix.vehicle_id].ts):
            newest[fix.vehicle_id] = fix
    open_ids: dict[str, list[str]] = {}
    for a in alerts:
        if a.start <= at and (a.end is None or a.end > at):
            open_ids.setdefault(a.vehicle_id, []).append(a.alert_id)
    orgs = {v.vehicle_id: v.org for v in ds.world.vehicles}
    rows = []
    for vehicle_id, fix in sorted(newest.items()):
        ids = tuple(sorted(open_ids.get(vehicle_id, [])))
        if fix.acc and (at - fix.ts).total_seconds() > defaults.offline_after_seconds:
            status = VehicleStatusKind.OFFLINE
        elif ids:
            status = VehicleStatusKind.ALERTING
        elif fix.acc and fix.speed_kmh >= defaults.stationary_speed_kmh:
            status = VehicleStatusKind.MOVING
        else:
            status = VehicleStatusKind.PARKED
        org = orgs.get(vehicle_id, "unregistered")
        rows.append(
            VehicleStatus(vehicle_id, org, fix.ts, fix.lat, fix.lon, fix.speed_kmh, fix.acc, status, ids, at)
        )
    return rows


def demo_topics(tag: str) -> dict[str, str]:
    return {table: f"fw-demo-{tag}-{table}" for table in TABLES}


Record = tuple[bytes, bytes, int | None]


def _records(ds: Dataset, result: Any, states: list[VehicleStatus], table: str) -> Iterator[Record]:
    if table == "positions":
        # Stamped with the terminal's send time, as the bridge's record would be when live: the
        # pipeline-health lags then read as they would for this traffic.
        for vehicle, m in ds.messages():
            yield vehicle.vehicle_id.encode(), m.payload, int(m.emit * 1000)
    elif table == "orders":
        for order in ds.orders:
            yield order.order_id.encode(), order.to_json(), None
    elif table in ("trips", "alerts"):
        now = datetime.now(UTC)
        records = result.sorted_trips() if table == "trips" else result.sorted_alerts()
        for record in records:
            kind, record_id = ("trip", record.trip_id) if table == "trips" else ("alert", record.alert_id)
            change = Change(kind, ChangeOp.UPSERT, record_id, record.vehicle_id, 1, now, record)
            yield record.vehicle_id.encode(), change.to_json(), None
    else:
        for status in states:
            yield status.vehicle_id.encode(), status.to_json(), None


def produce(settings: Settings, topic: str, records: Iterable[Record]) -> int:
    producer = make_producer(settings, client_id="fleetwatch-dashboards-demo")
    count = 0
    try:
        for key, value, timestamp_ms in records:
            producer.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
            count += 1
        producer.flush(300)
    finally:
        producer.close(30)
    return count


def load(
    settings: Settings,
    ds: Dataset,
    *,
    tag: str,
    state_at: datetime | None = None,
    tables: tuple[str, ...] = TABLES,
    progress: Progress | None = None,
    register: bool = True,
) -> DemoLoad:
    """Register, detect, produce to per-load topics, run the sink until idle, drop the topics."""
    from sink.registry import make_sinks
    from sink.runner import SinkRunner

    say = progress or (lambda _text: None)
    out = DemoLoad()
    if register:
        register_world(settings, ds.world)
    started = time.monotonic()
    result = detect(ds) if {"trips", "alerts", "vehicle_state"} & set(tables) else None
    out.detect_seconds = time.monotonic() - started
    if result is not None:
        say(
            f"detection: {len(result.trips):,} trips, {len(result.alerts):,} alerts "
            f"from {result.fixes:,} fixes "
            f"in {out.detect_seconds:.1f} s"
        )
    states: list[VehicleStatus] = []
    if "vehicle_state" in tables:
        at = state_at or max(
            datetime.fromtimestamp(m.t, UTC) for s in ds.streams for m in s if m.kind == "fix"
        )
        states = vehicle_states(ds, result.alerts.values() if result else (), at)
        # The sink orders a vehicle's states by their offset on the (compacted, long-lived) topic;
        # this load's fresh topic starts again at offset 0, so its states replace the earlier
        # demo rows of these vehicles only once those are gone.
        with connect(settings) as conn:
            conn.execute(
                "DELETE FROM vehicle_state WHERE vehicle_id = ANY(%s)", ([st.vehicle_id for st in states],)
            )
    names = demo_topics(tag)
    dlq = f"fw-demo-{tag}-dlq"
    try:
        for table in (*tables, "dlq"):
            create_topic(settings, names.get(table, dlq), 6 if table == "positions" else 3)
        started = time.monotonic()
        for table in tables:
            out.produced[table] = produce(settings, names[table], _records(ds, result, states, table))
            say(f"produced {out.produced[table]:,} records to {names[table]}")
        out.produce_seconds = time.monotonic() - started
        started = time.monotonic()
        overrides = {t: names[t] for t in tables}
        runner = SinkRunner(
            settings,
            make_sinks(list(tables), overrides),
            group=f"fw-demo-{tag}",
            dlq_topic=dlq,
            stop=threading.Event(),
        )
        stats = runner.run(idle_exit_s=5.0, progress_every_s=0)
        out.sink_seconds = time.monotonic() - started
        out.stored = {t: stats.changed[t] for t in tables}
        out.dead_letters = stats.dead_lettered
        out.sink_records_per_s = stats.records_per_s
        say(
            f"sink: {stats.records:,} records in {out.sink_seconds:.1f} s ({stats.records_per_s:,.0f}/s), "
            f"rows changed {dict(stats.changed)}, dead letters {stats.dead_lettered}"
        )
    finally:
        for table in (*tables, "dlq"):
            delete_topic(settings, names.get(table, dlq))
    return out
