"""The whole chain: simulator scenarios with transport faults -> MQTT -> bridge -> Kafka ->
`fleetwatch worker` -> `fleetwatch sink` -> TimescaleDB. Every valid fix is in positions exactly
once; the alerts and trips in the database equal their topics folded to the final state and
`fleetwatch detect` over the same fixes."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import create_topic, delete_topic
from fleetwatch.records import parse_fix
from fleetwatch.settings import Settings
from registry import remove
from tests.sink.helpers import (
    SinkThread,
    alert_keys,
    query,
    register,
    start_group_at_end,
    stored_alerts,
    stored_trips,
    trip_keys,
    wait_for,
)
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
