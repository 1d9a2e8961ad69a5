"""The whole chain: simulator scenarios with transport faults -> MQTT -> bridge -> Kafka ->
`fleetwatch worker` -> `fleetwatch sink` -> TimescaleDB. Every valid fix is in positions exactly
once; the alerts and trips in the database equal their topics folded to the final state and
`fleetwatch detect` over the same fixes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import create_topic, delete_topic
from fleetwatch.records import Alert, Severity, Trip, parse_fix
from fleetwatch.settings import Settings
from registry import remove
from simulator._world import Vehicle
from store.db import connect
from store.registry import DeviceRow, OrgRow, VehicleRow, upsert_registry
from tests.sink.helpers import SinkThread, query, start_group_at_end, wait_for
from tests.streams.worker.harness import (
    Bench,
    bridge_for,
    detect_over,
    publish,
    scenario_world,
    valid_fix_count,
    wait_equal,
    wait_telemetry,
)

pytestmark = pytest.mark.integration

#: Every alert type, an order that exempts one, a late upload and a power cut, on one vehicle each.
SCENARIOS = ["workday", "night", "dwell_ktv", "order_off_hours", "out_of_area", "depot_night", "overspeed",
             "offline_late_upload", "power_cut"]  # fmt: skip

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


def test_scenarios_through_worker_and_sink_land_once_and_equal_detect(
    database: Settings, unique: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    bench = Bench(database, tmp_path, unique[:10])
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "10"  # open alerts close once the fixes stop
    bench.setup()
    world = scenario_world(database, tmp_path / "world", seed=11, names=SCENARIOS, namespace=f"K{unique[:6]}")
    vehicles = world.dataset.world.vehicles
    vehicle_ids = [v.vehicle_id for v in vehicles]
    valid = set()
    for _vehicle, m in world.dataset.messages():
        if m.kind == "fix":
            fix = parse_fix(m.payload, max_future=timedelta(days=3650))
            valid.add((fix.device_id, fix.seq, fix.ts))
    kinds = {m.kind for _, m in world.dataset.messages()}
    assert {"duplicate", "malformed"} <= kinds
    register(database, vehicles)

    group = f"fw-test-chain-{unique}"
    tables = {"positions": bench.telemetry, "alerts": topics.ALERTS, "trips": topics.TRIPS}
    for topic in tables.values():  # the shared output topics hold other tests' changes: start at the end
        start_group_at_end(database, group, topic)
    dlq = f"fw-test-chain-dlq-{unique}"
    create_topic(database, dlq)
    try:
        with SinkThread(database, tables, group, dlq) as sink:
            bench.worker("chain", world.rules).start()
            bench.wait_ops("order_applied", bench.add_orders(world.directory / "orders.jsonl"))
            with bridge_for(bench, world):
                sent = publish(database, world, bench.tag)
                on_topic = wait_telemetry(database, bench.telemetry, valid_fix_count(world))
            expected = detect_over(database, bench.telemetry, world)
            folded = wait_equal(bench, expected, set(vehicle_ids), timeout_s=300)
            topic_trips = bench.folded(topics.TRIPS, set(vehicle_ids)).trips()
            assert topic_trips == expected.trips
            want_alerts, want_trips = alert_keys(expected.alerts.values()), trip_keys(expected.trips.values())

            def landed() -> bool:
                return stored_alerts(database, vehicle_ids) == want_alerts and stored_trips(
                    database, vehicle_ids) == want_trips  # fmt: skip

            wait_for(landed, 120, "database == detect")
            wait_for(lambda: sink.runner.stats.consumed["positions"] >= on_topic, 120, "sink read telemetry")
            assert sink.runner.stats.dead_lettered == 0
    finally:
        bench.stop_all()
        remove(database, [v.device_id for v in vehicles])
        delete_topic(database, dlq)

    rows = query(database, "SELECT device_id, seq, ts FROM positions WHERE device_id = ANY(%s)",
                 ([v.device_id for v in vehicles],))  # fmt: skip
    assert len(rows) == len(valid)  # exactly once: nothing missing, nothing twice
    assert {(d, s, ts) for d, s, ts in rows} == valid
    # The database, the alerts topic folded, and detect: three views, one set of alerts.
    assert alert_keys(folded.alerts().values()) == stored_alerts(database, vehicle_ids) == want_alerts
    types = sorted({k[1] for k in want_alerts})
    assert len(types) >= 5, types  # the scenarios raise most alert types, so the comparison has teeth
    assert trip_keys(topic_trips.values()) == stored_trips(database, vehicle_ids) == want_trips
    retracted = query(database, "SELECT count(*) FROM alerts WHERE vehicle_id = ANY(%s) "
                      "AND status = 'retracted'", (vehicle_ids,))[0][0]  # fmt: skip
    assert retracted == len(folded.retracted()) > 0  # an exempted alert stays, marked, for the audit
    print(f"\nchain: {sent} MQTT messages ({len(valid)} valid fixes) -> {on_topic} on Kafka -> {len(rows)} "
          f"positions rows; {len(want_alerts)} alerts ({', '.join(types)}) + {retracted} retracted, "
          f"{len(want_trips)} trips equal "
          f"(db = topic = detect); {time.monotonic() - began:.0f} s")
