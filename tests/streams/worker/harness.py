"""Integration-test tools for the worker: a `fleetwatch worker` subprocess, a scenario world
published through Mosquitto and the bridge onto a per-test telemetry topic, and the comparison
with `fleetwatch detect` over the very fixes that landed in Kafka."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from fleetwatch import topics
from fleetwatch.kafka_io import create_topic, delete_topic, end_offsets, read_topic
from fleetwatch.records import OpsEvent, parse_ops_event, parse_order
from fleetwatch.settings import Settings
from geofence import load_rules
from simulator import _mqtt
from simulator._dataset import Dataset, build_scenarios, write_dataset
from simulator._faults import FaultConfig
from simulator._motion import MotionConfig
from simulator._scenarios import SCENARIOS
from simulator.cli import register_world
from streams.core import Context, DetectionResult, OrderBook, detect_lines
from streams.worker.app import internal_topics
from tests.ingest.helpers import BridgeProcess, wait_for
from tests.registry.helpers import ensure_migrated
from tests.service import FLEETWATCH, ServiceProcess
from tests.streams.worker.fold import Folded, fold_topic

FAULTS = FaultConfig(duplicates=0.12, reorder=0.06, late_bursts=2, malformed=0.01)
OUTPUTS = (topics.ALERTS, topics.TRIPS, topics.OPS, topics.VEHICLE_STATE, topics.WORKER_DLQ)


class WorkerProcess(ServiceProcess):
    """`fleetwatch worker` as a child process (so it can be SIGKILLed)."""

    def __init__(self, log: Path, name: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(log, ["worker", "--name", name, *argv], ready=f"worker {name} started", env=env,
                         name=name)  # fmt: skip


@dataclass
class Bench:
    """One test's private topics, consumer group and worker settings on the shared stack."""

    settings: Settings
    tmp: Path
    tag: str
    env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)
    since: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def telemetry(self) -> str:
        return f"fwtest.{self.tag}.telemetry"

    @property
    def orders(self) -> str:
        return f"fwtest.{self.tag}.orders"

    def setup(self) -> Bench:
        # Topics are created deliberately: the stack's Kafka does not auto-create them.
        create_topic(self.settings, self.telemetry, topics.TELEMETRY_PARTITIONS)
        create_topic(self.settings, self.orders, topics.TELEMETRY_PARTITIONS)
        self.since = {t: end_offsets(self.settings, t) for t in OUTPUTS}
        self.env = {
            "FLEETWATCH_WORKER_APP_ID": f"fwtest-{self.tag}",
            "FLEETWATCH_WORKER_TIMER_SECONDS": "1",
            "FLEETWATCH_WORKER_VEHICLE_STATE_SECONDS": "1",
            "FLEETWATCH_WORKER_DATA_DIR": str(self.tmp / "worker-data"),
            **self.env,
        }
        return self

    def worker(self, name: str, rules: Path) -> WorkerProcess:
        argv = ["--config", str(rules), "--telemetry-topic", self.telemetry, "--orders-topic", self.orders]
        w = WorkerProcess(self.tmp / f"worker-{name}.log", name, argv, self.env)
        self.workers.append(w)
        return w

    def stop_all(self) -> None:
        """Teardown: stop the workers, drop this test's topics (inputs, changelog, assignor)."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop(30)
        if self.since:
            app_id = self.env["FLEETWATCH_WORKER_APP_ID"]
            for name in (self.telemetry, self.orders, *internal_topics(app_id)):
                with contextlib.suppress(Exception):
                    delete_topic(self.settings, name)

    def add_orders(self, path: Path) -> int:
        n = sum(1 for line in path.read_bytes().splitlines() if line.strip())
        subprocess.run(
            [FLEETWATCH, "orders", "add", str(path), "--topic", self.orders], check=True, capture_output=True
        )
        return n

    def ops(self) -> list[OpsEvent]:
        return [
            parse_ops_event(r.value)
            for r in read_topic(self.settings, topics.OPS, since=self.since[topics.OPS], timeout_s=60)
            if parse_ops_event(r.value).worker in {w.name for w in self.workers}
        ]

    def wait_ops(self, kind: str, count: int, timeout_s: float = 60.0) -> list[OpsEvent]:
        found: list[OpsEvent] = []

        def enough() -> bool:
            nonlocal found
            found = [e for e in self.ops() if e.kind == kind]
            return len(found) >= count

        wait_for(enough, timeout_s, f"{count} ops event(s) {kind!r}")
        return found

    def folded(self, topic: str, vehicles: set[str]) -> Folded:
        return fold_topic(self.settings, topic, self.since[topic], vehicles)


@dataclass
class World:
    directory: Path
    dataset: Dataset

    @property
    def rules(self) -> Path:
        return self.directory / "rules.yaml"

    @property
    def vehicles(self) -> set[str]:
        return {v.vehicle_id for v in self.dataset.world.vehicles}

    @property
    def devices(self) -> dict[str, str]:
        return {v.device_id: v.password for v in self.dataset.world.vehicles}


def scenario_world(
    settings: Settings, directory: Path, seed: int, names: list[str] | None = None, namespace: str = ""
) -> World:
    """Scenarios (default: the whole catalogue) with transport faults, written out and their devices
    registered; a namespace keeps the ids apart from earlier runs' rows in the database."""
    motion = MotionConfig(10, 300, invalid_rate=0.01)
    ds = build_scenarios(names or list(SCENARIOS), seed, motion, FAULTS, namespace=namespace)
    write_dataset(ds, directory)
    ensure_migrated(settings)
    register_world(settings, ds.world)  # database, registry topic, MQTT accounts
    return World(directory, ds)


def bridge_for(bench: Bench, world: World) -> BridgeProcess:
    only = [arg for d in world.devices for arg in ("--only-device", d)]
    return BridgeProcess(
        bench.tmp / "bridge.log",
        instance=f"w{bench.tag}",
        share_group=f"w{bench.tag}",
        extra=["--topic", bench.telemetry, *only],
    )


def publish(
    settings: Settings,
    world: World,
    tag: str,
    rate: float = 0.0,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Every message of the world (faults included) through Mosquitto as its own device, QoS 1;
    every one acknowledged (PUBACK)."""
    stats = publish_counted(settings, world, tag, rate=rate, on_sent=on_sent)
    assert stats.failed == 0
    return world.dataset.count()


def publish_counted(
    settings: Settings,
    world: World,
    tag: str,
    rate: float = 0.0,
    on_sent: Callable[[int], None] | None = None,
    drain_timeout: float = 300.0,
) -> _mqtt.PublishStats:
    """`publish` returning the publisher's counts (sent, acknowledged, not acknowledged).

    Client ids carry the test's tag: Mosquitto 2.0.11 was seen to segfault when a publisher
    resumed a session that an earlier, failed run had left with messages in flight."""

    def messages() -> Iterator[_mqtt.Outgoing]:
        for n, (v, m) in enumerate(world.dataset.messages(), start=1):
            if on_sent is not None:
                on_sent(n)
            yield _mqtt.Outgoing(v.device_id, m.payload)

    return _mqtt.publish(
        settings, messages(), world.devices, rate=rate, client_tag=f"w{tag}", drain_timeout=drain_timeout
    )


def telemetry_values(settings: Settings, topic: str) -> list[bytes]:
    return [bytes(r.value) for r in read_topic(settings, topic, timeout_s=60)]


def wait_telemetry(settings: Settings, topic: str, at_least: int, timeout_s: float = 300.0) -> int:
    """Wait until the bridge has written at least `at_least` records and stopped writing more."""
    last = -1

    def settled() -> bool:
        nonlocal last
        total = sum(end_offsets(settings, topic).values())
        done = total >= at_least and total == last
        last = total
        return done

    wait_for(settled, timeout_s, f"{at_least} records on {topic}", interval_s=2.0)
    return last


def detect_over(settings: Settings, topic: str, world: World) -> DetectionResult:
    """`fleetwatch detect` over exactly the fixes that are on the topic, with the world's orders."""
    orders = [
        parse_order(x) for x in (world.directory / "orders.jsonl").read_bytes().splitlines() if x.strip()
    ]
    rules = load_rules(world.rules)
    return detect_lines(telemetry_values(settings, topic), Context(rules, OrderBook.of(orders)))


def valid_fix_count(world: World) -> int:
    """Messages the bridge will accept (everything but the malformed ones)."""
    return sum(1 for _, m in world.dataset.messages() if m.kind != "malformed")


def wait_equal(bench: Bench, expected: DetectionResult, vehicles: set[str], timeout_s: float) -> Folded:
    """Poll the alerts topic until its fold equals `expected` (or time out, with the difference)."""
    folded = Folded()

    def equal() -> bool:
        nonlocal folded
        folded = bench.folded(topics.ALERTS, vehicles)
        return folded.alerts() == expected.alerts

    try:
        wait_for(equal, timeout_s, "folded alerts topic == detect", interval_s=2.0)
    except TimeoutError:
        got, want = folded.alerts(), expected.alerts
        diff = sorted(set(got) ^ set(want)) + sorted(k for k in set(got) & set(want) if got[k] != want[k])
        shown = [orjson.dumps({"id": k, "worker": _d(got.get(k)), "detect": _d(want.get(k))}) for k in diff]
        raise AssertionError(
            f"{len(diff)} alert(s) differ:\n" + "\n".join(s.decode() for s in shown)
        ) from None
    return folded


def _d(x: object) -> object:
    to_dict = getattr(x, "to_dict", None)
    return to_dict() if to_dict else None
