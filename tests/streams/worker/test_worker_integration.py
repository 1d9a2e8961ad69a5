"""The worker on the real stack: simulator scenarios with faults -> MQTT -> bridge -> Kafka ->
worker(s). The alerts topic, folded, must equal `fleetwatch detect` over the same fixes."""

from __future__ import annotations

import threading
import time

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import read_topic
from fleetwatch.records import ChangeOp, parse_vehicle_status
from fleetwatch.settings import Settings
from streams.core import DetectionResult
from streams.core.scoring import parse_alerts, parse_truth, score
from tests.ingest.helpers import wait_for
from tests.streams.worker.harness import (
    Bench,
    World,
    bridge_for,
    detect_over,
    publish,
    scenario_world,
    valid_fix_count,
    wait_equal,
    wait_telemetry,
)

pytestmark = pytest.mark.integration


def _start(bench: Bench, world: World, names: list[str]) -> None:
    for name in names:
        bench.worker(name, world.rules).start()
    n = bench.add_orders(world.directory / "orders.jsonl")
    # The orders are joined before the fixes flow (a late order is its own test below).
    bench.wait_ops("order_applied", n)


def _check_against_truth(world: World, expected: DetectionResult) -> None:
    truth = parse_truth((world.directory / "truth.jsonl").read_bytes().splitlines())
    report = score(truth, parse_alerts([a.to_json() for a in expected.sorted_alerts()]))
    assert [(m.type, m.scenario) for m in report.misses] == []
    assert [(f.alert.type.value, f.reason) for f in report.false_alarms] == []
    assert all(r.precision in (None, 1.0) and r.recall in (None, 1.0) for r in report.by_type.values())


def _publish_in_background(
    settings: Settings, world: World, tag: str, rate: float
) -> tuple[threading.Thread, list[int]]:
    sent = [0]
    errors: list[BaseException] = []

    def progress(n: int) -> None:
        sent[0] = n

    def body() -> None:
        try:
            publish(settings, world, tag, rate=rate, on_sent=progress)
        except BaseException as exc:  # reported by the caller's join
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, sent


def test_one_worker_equals_detect_and_scores_perfectly(settings: Settings, bench: Bench) -> None:
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "10"
    bench.setup()
    world = scenario_world(settings, bench.tmp / "world", seed=1)
    _start(bench, world, ["solo"])
    with bridge_for(bench, world):
        publish(settings, world, bench.tag)
        wait_telemetry(settings, bench.telemetry, valid_fix_count(world))
    expected = detect_over(settings, bench.telemetry, world)
    folded = wait_equal(bench, expected, world.vehicles, timeout_s=300)
    _check_against_truth(world, expected)
    assert bench.folded(topics.TRIPS, world.vehicles).trips() == expected.trips
    # Alerts an order exempted are on the topic as retractions naming the order (the audit trail).
    exempted = {k.removeprefix("exempt:") for k in expected.exempted}
    retracted = folded.retracted()
    assert exempted and all(retracted[k].reason == "exempted" and retracted[k].order_id for k in exempted)
    # The live map's feed: one row per vehicle, its newest fix.
    newest: dict[str, str] = {}
    for r in read_topic(settings, topics.VEHICLE_STATE, since=bench.since[topics.VEHICLE_STATE]):
        row = parse_vehicle_status(r.value)
        if row.vehicle_id in world.vehicles:
            newest[row.vehicle_id] = row.ts.isoformat()
    assert set(newest) == world.vehicles
    # The bridge dead-lettered the malformed messages; nothing reached the worker's DLQ.
    assert list(read_topic(settings, topics.WORKER_DLQ, since=bench.since[topics.WORKER_DLQ])) == []


def test_kill9_mid_run_and_restart_loses_nothing(settings: Settings, bench: Bench) -> None:
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "45"
    bench.env["FLEETWATCH_WORKER_SESSION_TIMEOUT_SECONDS"] = "8"
    bench.setup()
    world = scenario_world(settings, bench.tmp / "world", seed=2)
    _start(bench, world, ["victim"])
    victim = bench.workers[0]
    total = world.dataset.count()
    with bridge_for(bench, world):
        thread, sent = _publish_in_background(settings, world, bench.tag, rate=2500)
        wait_for(lambda: sent[0] >= total * 0.4, 60, "40 % published", interval_s=0.1)
        victim.kill9()
        killed_at = time.monotonic()
        victim.start()
        restarted_s = time.monotonic() - killed_at
        thread.join(120)
        wait_telemetry(settings, bench.telemetry, valid_fix_count(world))
    expected = detect_over(settings, bench.telemetry, world)
    wait_equal(bench, expected, world.vehicles, timeout_s=300)
    _check_against_truth(world, expected)
    assert bench.folded(topics.TRIPS, world.vehicles).trips() == expected.trips
    print(f"kill -9 at 40 %: restarted (ready) in {restarted_s:.1f} s; {len(expected.alerts)} alerts equal")


@pytest.mark.slow
def test_two_workers_and_a_third_joining_mid_run_equal_detect(settings: Settings, bench: Bench) -> None:
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "30"
    bench.setup()
    world = scenario_world(settings, bench.tmp / "world", seed=3)
    _start(bench, world, ["w1", "w2"])
    total = world.dataset.count()
    with bridge_for(bench, world):
        thread, sent = _publish_in_background(settings, world, bench.tag, rate=2500)
        wait_for(lambda: sent[0] >= total * 0.35, 60, "35 % published", interval_s=0.1)
        bench.worker("w3", world.rules).start()
        thread.join(120)
        wait_telemetry(settings, bench.telemetry, valid_fix_count(world))
    expected = detect_over(settings, bench.telemetry, world)
    folded = wait_equal(bench, expected, world.vehicles, timeout_s=300)
    _check_against_truth(world, expected)
    assert bench.folded(topics.TRIPS, world.vehicles).trips() == expected.trips
    # The third worker really took part: it was assigned partitions and processed fixes.
    assigned = [e for e in bench.ops() if e.kind == "partitions_assigned" and e.worker == "w3"]
    assert assigned and assigned[-1].detail["partitions"]
    assert any(c.op is ChangeOp.UPSERT for c in folded.latest.values())
