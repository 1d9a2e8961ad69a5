"""The fault suite: simulator scenarios through the whole pipeline (MQTT -> bridge -> Kafka -> worker
-> sink -> TimescaleDB, and the notifier) while every part is killed or taken away in turn; then
count what arrived against what was sent. `tests/faults/test_faults_integration.py` asserts on the
counts (PostgreSQL away for a short outage); `bench/bench_faults.py` runs it with the 60 s one.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from rich.table import Table

from fleetwatch import topics
from fleetwatch.kafka_io import create_topic, delete_topic, read_topic
from fleetwatch.records import ChangeOp, parse_change, parse_fix, parse_order
from fleetwatch.settings import Settings
from fleetwatch.stack import down, status
from geofence import load_rules
from ingest.bridge import BridgeConfig
from registry import remove
from streams.core import Context, OrderBook, detect_lines
from tests.notify.receivers import Endpoint, Receivers
from tests.service import ServiceProcess, stack_up_again
from tests.sink.helpers import (
    SinkProcess,
    alert_keys,
    query,
    register,
    start_group_at_end,
    stored_alerts,
    wait_for,
)
from tests.streams.worker.harness import (
    Bench,
    World,
    bridge_for,
    detect_over,
    publish_counted,
    scenario_world,
    wait_equal,
    wait_telemetry,
)

#: Every alert type the notifier routes, a late upload and a power cut; no order exemptions, so
#: every alert's notices are fixed by its revisions (a retraction may race its own notice).
SCENARIOS = [
    "workday",
    "night",
    "dwell_ktv",
    "out_of_area",
    "depot_night",
    "overspeed",
    "offline_late_upload",
    "power_cut",
]
HOOK_SECRET = "fault-suite-secret"


@dataclass
class Counts:
    """The suite's figures: what was sent, what arrived, what was lost or doubled."""

    messages_sent: int = 0  # MQTT messages, duplicates and malformed extras included
    acknowledged: int = 0  # PUBACKed by Mosquitto
    fixes_sent: int = 0  # distinct valid fixes among them
    fixes_on_kafka: int = 0  # distinct valid fixes the bridge wrote
    fixes_stored: int = 0  # distinct rows in positions
    fixes_lost: int = 0
    fixes_duplicated: int = 0  # rows beyond one per (device, seq, ts)
    loss_bound: int = 0  # rate x Mosquitto autosave interval
    restart_bound: int = 0  # rate x (the bridge's longest reconnect wait + 2 s to connect and subscribe)
    lost_outside_window: int = 0  # lost fixes not sent in the autosave interval before the broker died
    lost_before_kill: int = 0  # of them, taken by the broker before it died (the autosave bound)
    lost_after_restart: int = 0  # taken by the restarted broker, never delivered to the bridge
    lost_messages: list[int] = field(default_factory=list)  # message number (publish order) of each
    fault_messages: list[tuple[str, int, int]] = field(
        default_factory=list
    )  # messages handed over: before, after
    alerts_expected: int = 0  # ground truth: `fleetwatch detect` over every valid fix sent
    alerts_stored: int = 0
    alerts_lost: int = 0
    alerts_unexpected: int = 0
    alerts_duplicated: int = 0
    notifications_expected: int = 0
    notifications_sent: int = 0
    notifications_duplicated: int = 0
    notifications_unfinished: int = 0  # delivery rows not 'sent' at the end
    faults: list[tuple[str, float]] = field(default_factory=list)  # (fault, seconds it took)
    restarts: dict[str, int] = field(default_factory=dict)
    unexpected_exits: dict[str, list[int]] = field(default_factory=dict)
    stack_not_running: list[str] = field(default_factory=list)
    felt: dict[str, int] = field(default_factory=dict)  # outages the services logged (proof they hit)
    seconds: float = 0.0

    def table(self, title: str) -> Table:
        out = Table(title=title)
        for col in ("", "sent", "acknowledged", "expected", "stored / sent", "lost", "duplicated"):
            out.add_column(col, justify="left" if not col else "right")
        out.add_row(
            "fixes",
            f"{self.fixes_sent:,} ({self.messages_sent:,} messages)",
            f"{self.acknowledged:,} messages",
            f"{self.fixes_sent:,}",
            f"{self.fixes_stored:,}",
            f"{self.fixes_lost:,} ({self.lost_before_kill:,} before the broker's kill, bound"
            f" {self.loss_bound:,}; {self.lost_after_restart:,} after its restart,"
            f" bound {self.restart_bound:,})",
            f"{self.fixes_duplicated:,}",
        )
        out.add_row(
            "alerts",
            "",
            "",
            f"{self.alerts_expected:,}",
            f"{self.alerts_stored:,}",
            f"{self.alerts_lost:,}",
            f"{self.alerts_duplicated:,}",
        )
        out.add_row(
            "notifications",
            "",
            "",
            f"{self.notifications_expected:,}",
            f"{self.notifications_sent:,}",
            f"{max(self.notifications_expected - self.notifications_sent, 0):,}",
            f"{self.notifications_duplicated:,}",
        )
        return out


@dataclass
class Pipeline:
    """The services of one run, each a child process the suite may SIGKILL and restart."""

    bridge: ServiceProcess
    worker: ServiceProcess
    sink: ServiceProcess
    notifier: ServiceProcess

    @property
    def services(self) -> dict[str, ServiceProcess]:
        return {"bridge": self.bridge, "worker": self.worker, "sink": self.sink, "notifier": self.notifier}


def restart_kafka(settings: Settings) -> None:
    down(settings, services=("kafka",))
    stack_up_again(settings)


def postgres_outage(settings: Settings, seconds: float) -> None:
    down(settings, services=("postgres",))
    time.sleep(seconds)
    stack_up_again(settings)


def kill_mosquitto(settings: Settings) -> None:
    """kill -9 of the broker the stack started (its own pid file), then `stack up` brings it back."""
    pid = next(s.pid for s in status(settings) if s.service == "mosquitto")
    assert pid is not None, "mosquitto is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10, "mosquitto gone")
    stack_up_again(settings)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    return True


def kill_and_restart(services: list[ServiceProcess]) -> None:
    """kill -9 each, then start them again side by side (each waits for its own readiness line)."""
    for service in services:
        service.kill9()
    errors: list[BaseException] = []

    def start(service: ServiceProcess) -> None:
        try:
            service.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def fault_plan(
    settings: Settings, pipe: Pipeline, pg_outage_s: float
) -> list[tuple[str, Callable[[], None]]]:
    """In this order, each while fixes are flowing. The four application services die together
    (each must recover without the others' help; sequentially they took ~50 s of CI time)."""
    return [
        (
            "kill -9 bridge, worker, sink, notifier + restart",
            lambda: kill_and_restart(list(pipe.services.values())),
        ),
        ("restart Kafka", lambda: restart_kafka(settings)),
        ("kill -9 Mosquitto + restart", lambda: kill_mosquitto(settings)),
        (f"PostgreSQL stopped {pg_outage_s:g} s", lambda: postgres_outage(settings, pg_outage_s)),
    ]


def _routes_file(path: Path, receivers: Receivers, orgs: set[str], tag: str) -> tuple[Endpoint, set[str]]:
    """One route per unit org (sub-orgs off, so escalations, which go one level up, find no route)."""
    hook = Endpoint("webhook", secret=HOOK_SECRET)
    url = receivers.add(f"faults-{tag}", hook)
    routes = [
        {"name": f"f{tag}-{org}", "org": org, "include_suborgs": False, "channels": ["hook"]}
        for org in sorted(orgs)
    ]
    path.write_text(
        yaml.safe_dump(
            {
                "channels": {
                    "hook": {
                        "type": "webhook",
                        "url": url,
                        "secret_env": "FW_FAULT_HOOK_SECRET",
                        "rate_per_minute": 600,
                    }
                },
                "routes": routes,
            }
        )
    )
    return hook, {r["name"] for r in routes}


def expected_notices(settings: Settings, bench: Bench, vehicles: set[str], keep: set[str]) -> int:
    """Notices the notifier owes per route: an alert's first revision, again when it turns red
    (README "When a route is told"), read off the alerts topic in order."""
    seen: dict[str, int] = {}  # alert id -> highest severity rank noticed
    notices = 0
    for record in read_topic(settings, topics.ALERTS, since=bench.since[topics.ALERTS], timeout_s=60):
        change = parse_change(record.value)
        if change.vehicle_id not in vehicles or change.id not in keep or change.op is not ChangeOp.UPSERT:
            continue
        rank = 2 if str(change.record.severity or "yellow") == "red" else 1  # type: ignore[union-attr]
        if rank > seen.get(change.id, 0):
            seen[change.id] = rank
            notices += 1
    return notices


def truth(world: World) -> dict[str, Any]:
    """Ground truth: `fleetwatch detect` over every message the simulator sends (duplicates and
    garbage included: the detection core drops them as the pipeline does)."""
    orders = [
        parse_order(x) for x in (world.directory / "orders.jsonl").read_bytes().splitlines() if x.strip()
    ]
    lines = [m.payload for _, m in world.dataset.messages()]
    return dict(detect_lines(lines, Context(load_rules(world.rules), OrderBook.of(orders))).alerts)


def run_suite(
    settings: Settings,
    tmp: Path,
    tag: str,
    *,
    pg_outage_s: float,
    publish_seconds: float,
    log: Callable[[str], None] = print,
) -> Counts:
    began = time.monotonic()
    counts = Counts()
    bench = Bench(settings, tmp, tag[:10])
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "10"  # open alerts close once the fixes stop
    bench.setup()
    world = scenario_world(settings, tmp / "world", seed=15, names=SCENARIOS, namespace=f"F{tag[:6]}")
    vehicles = world.dataset.world.vehicles
    vehicle_ids = [v.vehicle_id for v in vehicles]
    numbers: dict[tuple[Any, ...], list[int]] = {}  # each valid fix -> the message numbers carrying it
    for n, (_vehicle, m) in enumerate(world.dataset.messages(), start=1):
        if m.kind == "fix":
            f = parse_fix(m.payload, max_future=timedelta(days=3650))
            numbers.setdefault((f.device_id, f.seq, f.ts), []).append(n)
    valid = set(numbers)
    counts.fixes_sent = len(valid)
    register(settings, vehicles)

    group = f"fw-faults-{tag}"
    tables = {"positions": bench.telemetry, "alerts": topics.ALERTS, "trips": topics.TRIPS}
    for topic in tables.values():  # the shared output topics hold earlier changes: start at the end
        start_group_at_end(settings, group, topic)
    notify_group = f"fw-faults-notify-{tag}"
    start_group_at_end(settings, notify_group, topics.ALERTS)
    dlq = f"fw-faults-dlq-{tag}"
    create_topic(settings, dlq)
    receivers = Receivers()
    hook, route_names = _routes_file(tmp / "notify.yaml", receivers, {v.org for v in vehicles}, tag)
    notifier = ServiceProcess(
        tmp / "notifier.log",
        ["notify", "run", "--routes", str(tmp / "notify.yaml"), "--topic", topics.ALERTS],
        ready="notify:",
        env={
            "FW_FAULT_HOOK_SECRET": HOOK_SECRET,
            "FLEETWATCH_NOTIFY_GROUP": notify_group,
            "FLEETWATCH_NOTIFY_BACKOFF_SECONDS": "1",
        },
        name="notifier",
    )
    sink = SinkProcess(tmp / "sink.log", tables, group, dlq)
    pipe = Pipeline(bridge_for(bench, world), bench.worker("faults", world.rules), sink, notifier)
    stop_watch = threading.Event()
    try:
        for service in pipe.services.values():
            service.start()
        bench.wait_ops("order_applied", bench.add_orders(world.directory / "orders.jsonl"))

        def watch() -> None:  # notices a service that dies on its own between faults
            while not stop_watch.wait(1.0):
                for service in pipe.services.values():
                    service.check_alive()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        messages = sum(1 for _ in world.dataset.messages())
        rate = messages / publish_seconds
        counts.loss_bound = math.ceil(rate * settings.mqtt_autosave_interval)
        counts.restart_bound = math.ceil(rate * (BridgeConfig().mqtt_reconnect_max_s + 2.0))
        published: dict[str, Any] = {}
        handed: list[int] = []  # message numbers as the publisher takes them (in order)
        plan = fault_plan(settings, pipe, pg_outage_s)
        # The messages in len(plan) + 1 stretches: the publisher may run one stretch ahead of the
        # faults and waits at its end, so every fault starts with fixes flowing however long the
        # previous one took (a Kafka restart took 30-70 s on the loaded CI machine).
        ends = [messages * (i + 1) // (len(plan) + 1) for i in range(len(plan))] + [messages]
        allowed = [ends[0]]

        next_due = [time.monotonic()]

        def take(n: int) -> None:
            """Pace at ``rate`` and hold at the end of the current stretch. (The publisher's own pacing
            would catch up after a hold with a burst of everything due meanwhile.)"""
            while n > allowed[0] and "abort" not in published:
                time.sleep(0.05)
            now = time.monotonic()
            if next_due[0] > now:
                time.sleep(next_due[0] - now)
            next_due[0] = max(now, next_due[0]) + 1.0 / rate
            handed.append(n)

        def publisher() -> None:
            try:
                published["stats"] = publish_counted(
                    settings, world, bench.tag, rate=0, drain_timeout=600, on_sent=take
                )
            except BaseException as exc:
                published["error"] = exc

        sender = threading.Thread(target=publisher, name="publisher", daemon=True)
        sender.start()
        log(f"publishing {messages:,} messages at {rate:.0f}/s while injecting faults")
        try:
            for index, (name, fault) in enumerate(plan):
                wait_for(lambda: len(handed) >= allowed[0], 600, "publisher at the next fault")
                allowed[0] = ends[index + 1]
                started, handed_before = time.monotonic(), len(handed)
                fault()
                counts.faults.append((name, time.monotonic() - started))
                counts.fault_messages.append((name, handed_before, len(handed)))
                took = counts.faults[-1][1]
                log(f"  fault: {name} ({took:.1f} s, messages {handed_before:,}-{len(handed):,})")
        finally:
            published["abort"] = True  # never leave the publisher parked (a fault raised)
        sender.join(900)
        if "error" in published:
            raise published["error"]
        stats = published["stats"]
        counts.messages_sent, counts.acknowledged = stats.sent, stats.acked
        log(f"published: {stats.sent:,} sent, {stats.acked:,} acknowledged, {stats.failed:,} not")

        # Everything that got through, and what detection makes of it.
        on_topic = wait_telemetry(settings, bench.telemetry, counts.fixes_sent - counts.loss_bound)
        kafka_fixes = {(f.device_id, f.seq, f.ts) for f in _fixes_on(settings, bench.telemetry)}
        counts.fixes_on_kafka = len(kafka_fixes & valid)
        log(f"on Kafka: {on_topic:,} records, {counts.fixes_on_kafka:,} distinct valid fixes")
        ground = truth(world)
        expected = detect_over(settings, bench.telemetry, world)
        if kafka_fixes >= valid:
            assert alert_keys(expected.alerts.values()) == alert_keys(ground.values()), (
                "detect over Kafka != truth"
            )
        wait_equal(bench, expected, set(vehicle_ids), timeout_s=300)
        want = alert_keys(expected.alerts.values())
        wait_for(lambda: stored_alerts(settings, vehicle_ids) == want, 180, "alerts table == detect")

        def positions() -> tuple[int, int]:
            row = query(
                settings,
                "SELECT count(*), count(DISTINCT (device_id, seq, ts)) FROM positions "
                "WHERE device_id = ANY(%s)",
                ([v.device_id for v in vehicles],),
            )[0]
            return int(row[0]), int(row[1])

        wait_for(lambda: positions()[1] >= counts.fixes_on_kafka, 180, "positions hold every fix on Kafka")
        rows, distinct = positions()
        counts.fixes_stored, counts.fixes_duplicated = distinct, rows - distinct
        counts.fixes_lost = counts.fixes_sent - distinct
        # Which fixes: only those the broker took in the autosave interval before its kill (plus the
        # publishers' in-flight windows), or right after its restart, before the bridge had subscribed
        # again (Mosquitto 2.0.11 restores the bridge's session, yet drops what arrives until the
        # bridge's SUBSCRIBE: measured here, see README "Broker crash bound").
        rows = query(
            settings,
            "SELECT device_id, seq, ts FROM positions WHERE device_id = ANY(%s)",
            ([v.device_id for v in vehicles],),
        )
        lost = valid - {(d, q, t) for d, q, t in rows}
        _, killed, back = next(f for f in counts.fault_messages if f[0].startswith("kill -9 Mosquitto"))
        window = range(killed - counts.loss_bound - 100 * len(vehicles), back + counts.loss_bound + 1)
        counts.lost_outside_window = sum(1 for key in lost if not any(n in window for n in numbers[key]))
        counts.lost_before_kill = sum(1 for key in lost if min(numbers[key]) <= killed)
        counts.lost_after_restart = len(lost) - counts.lost_before_kill
        counts.lost_messages = sorted(min(numbers[key]) for key in lost)

        stored = stored_alerts(settings, vehicle_ids)
        truth_keys = alert_keys(ground.values())
        counts.alerts_expected, counts.alerts_stored = len(truth_keys), len(stored & truth_keys)
        counts.alerts_lost = len(truth_keys - stored)
        counts.alerts_unexpected = len(stored - truth_keys)
        dup = query(
            settings,
            "SELECT count(*) - count(DISTINCT alert_id) FROM alerts WHERE vehicle_id = ANY(%s)",
            (vehicle_ids,),
        )[0][0]
        counts.alerts_duplicated = int(dup)

        # Notifications: one per (alert, route) and severity step, each received once.
        ours = {k[0] for k in want}
        counts.notifications_expected = expected_notices(settings, bench, set(vehicle_ids), ours)

        def delivered() -> list[dict[str, Any]]:
            return [
                d
                for d in list(hook.accepted)
                if d["alert"]["alert_id"] in ours
                and d["route"].split("/")[0] in route_names
                and d["purpose"] == "alert"
            ]

        with contextlib.suppress(TimeoutError):
            wait_for(lambda: len(delivered()) >= counts.notifications_expected, 120, "notices delivered")
        time.sleep(3.0)  # a repeat, if any, would come now
        accepted = delivered()
        keys = [(d["alert"]["alert_id"], d["route"], d["alert"]["severity"]) for d in accepted]
        counts.notifications_sent = len(set(keys))
        replays = sum(1 for why in hook.rejected if why == "replayed delivery")
        counts.notifications_duplicated = len(keys) - len(set(keys)) + replays
        unfinished = query(
            settings,
            "SELECT count(*) FROM notify_deliveries WHERE alert_id = ANY(%s) AND status <> 'sent'",
            (list(ours),),
        )[0][0]
        counts.notifications_unfinished = int(unfinished)
        outages = re.findall(r"db outages (\d+)", pipe.sink.log_text())
        counts.felt = {
            "sink: database outages": int(outages[-1]) if outages else 0,
            "notifier: database unavailable": pipe.notifier.log_text().count("database unavailable"),
            "notifier: Kafka unavailable": pipe.notifier.log_text().count("Kafka unavailable"),
            "bridge: MQTT connection lost": pipe.bridge.log_text().count("MQTT connection lost"),
        }
    finally:
        stop_watch.set()
        for name, service in pipe.services.items():
            service.check_alive()
            counts.unexpected_exits[name] = list(service.unexpected_exits)
            counts.restarts[name] = service.starts - 1
            if not service.running:
                counts.unexpected_exits[name].append(-1)  # not running at the end
        counts.stack_not_running = [s.service for s in status(settings) if s.state != "running"]
        for service in pipe.services.values():
            service.ensure_stopped()
        bench.stop_all()
        receivers.close()
        with contextlib.suppress(Exception):
            remove(settings, [v.device_id for v in vehicles])
        with contextlib.suppress(Exception):
            delete_topic(settings, dlq)
    counts.seconds = time.monotonic() - began
    return counts


def _fixes_on(settings: Settings, topic: str) -> list[Any]:
    out = []
    for record in read_topic(settings, topic, timeout_s=60):
        with contextlib.suppress(Exception):
            out.append(parse_fix(orjson.loads(record.value), max_future=timedelta(days=3650)))
    return out
