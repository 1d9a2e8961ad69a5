"""The whole scenario set twice, over MQTT (bridge) and over JT/T 808 (gateway): the same alerts.

Both paths end in the telemetry topic of the real Kafka; each path's records are read back and
run through the detection core with the world's rules and orders. Transport faults are on
(duplicates, reordering, late bursts, malformed messages): over JT/T 808 they become re-sent
reports, blind-area 0x0704 batches after a reconnect, and frames with a wrong check code.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets, read_topic
from fleetwatch.records import ContractError, parse_fix, parse_order
from fleetwatch.settings import Settings
from geofence import load_rules
from simulator._jt808 import phone_for
from streams.core import Context, OrderBook, detect_lines
from streams.core.scoring import parse_alerts, parse_truth, score
from tests.ingest.helpers import FLEETWATCH
from tests.ports import free_port
from tests.registry.helpers import ensure_migrated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = "5"
FAULTS = ["--duplicates", "0.05", "--reorder", "0.03", "--late-bursts", "1", "--malformed", "0.01"]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    run = subprocess.run(
        [FLEETWATCH, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _records(settings: Settings, since: dict[int, int], devices: set[str]) -> list[bytes]:
    return [
        r.value for r in read_topic(settings, topics.TELEMETRY, since=since)
        if orjson.loads(r.value)["device_id"] in devices
    ]  # fmt: skip


def _alerts(world: Path, lines: list[bytes]) -> dict[str, dict[str, Any]]:
    rules = load_rules(world / "rules.yaml")
    orders = [parse_order(x) for x in (world / "orders.jsonl").read_bytes().splitlines() if x.strip()]
    result = detect_lines(lines, Context(rules, OrderBook.of(orders)))
    assert not result.dead_letters  # only valid fixes are in the telemetry topic
    return {a.alert_id: a.to_dict() for a in result.sorted_alerts()}


def test_scenarios_over_jt808_raise_the_same_alerts_as_over_mqtt(
    stack: Settings, tmp_path: Path, bridges: Any
) -> None:
    ensure_migrated(stack)  # the simulator registers its devices in the product's registry
    world = tmp_path / "world"
    _cli("simulate", "scenario", "all", "--out", str(world), "--seed", SEED, *FAULTS)
    sent_fixes = []
    for line in (world / "fixes.jsonl").read_bytes().splitlines():
        with contextlib.suppress(ContractError):  # the malformed fault lines
            sent_fixes.append(parse_fix(line))
    sim_devices = {f.device_id for f in sent_fixes}
    phones = {phone_for(d) for d in sim_devices}
    since = end_offsets(stack, topics.TELEMETRY)

    # MQTT: simulator -> Mosquitto -> bridge -> Kafka
    only = [arg for device in sorted(sim_devices) for arg in ("--only-device", device)]
    bridge = bridges(f"jt808-e2e-{SEED}", extra=only)
    bridge.start()
    _cli("simulate", "scenario", "all", "--mqtt", "--seed", SEED, *FAULTS)
    deadline = time.monotonic() + 300
    while len(mqtt := _records(stack, since, sim_devices)) < len(sent_fixes):
        assert time.monotonic() < deadline, f"{len(mqtt)} of {len(sent_fixes)} MQTT fixes in Kafka"
        time.sleep(2)
    bridge.stop()

    # JT/T 808: simulated terminals -> gateway -> Kafka (each report answered only once in Kafka)
    port = free_port()
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [FLEETWATCH, "jt808", "--host", "127.0.0.1", "--port", str(port), "--instance", "e2e"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", "FLEETWATCH_JT808_FRAMES_PER_S": "1000"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        gateway_log = tmp_path / "gateway.log"
        while "listening" not in gateway_log.read_text(errors="replace"):
            assert gateway.poll() is None and time.monotonic() < deadline, gateway_log.read_text()
            time.sleep(0.2)
        out = _cli("simulate", "scenario", "all", "--protocol", "jt808", "--gateway", f"127.0.0.1:{port}",
                   "--seed", SEED, *FAULTS)  # fmt: skip
    finally:
        gateway.terminate()
        gateway.wait(60)
    jt808 = _records(stack, since, phones)
    print(out)

    # Every fix the simulator sent is in Kafka over both paths (duplicates included).
    assert len(mqtt) == len(sent_fixes)
    assert len(jt808) >= len(sent_fixes)  # a re-sent report after a lost reply may add a duplicate
    assert Counter(orjson.loads(x)["vehicle_id"] for x in jt808).keys() == {f.vehicle_id for f in sent_fixes}

    over_mqtt = _alerts(world, mqtt)
    over_jt808 = _alerts(world, jt808)
    assert over_mqtt, "the scenario set must raise alerts"
    assert over_jt808 == over_mqtt

    truth = parse_truth((world / "truth.jsonl").read_bytes().splitlines())
    report = score(truth, parse_alerts([orjson.dumps(a) for a in over_jt808.values()]))
    assert report.misses == [] and report.false_alarms == []
