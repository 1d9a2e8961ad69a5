"""Bridge throughput (QoS 1, PUBACK after Kafka) vs `mosquitto_sub | kcat -P` in the same run.

A third run drains the same backlog with a bare paho client that acknowledges on arrival and
does nothing else: the ceiling for any paho-based bridge in one process.

Both sides drain the same kind of backlog: N fixes are published while the consumer's
persistent session is offline (Mosquitto queues them), then the consumer starts and we time
how fast the records appear in its own Kafka topic. Draining a backlog measures the
consumer, not the publisher. The baseline has no delivery guarantee: mosquitto_sub
acknowledges each message as soon as it has it, and kcat batches without telling anyone.

    .venv/bin/python bench/bench_ingest.py [--fixes 40000] [--devices 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from kafka import TopicPartition
from rich.console import Console
from rich.table import Table

from fleetwatch.kafka_auth import kcat_args
from fleetwatch.kafka_io import create_topic, delete_topic, make_consumer
from fleetwatch.settings import Settings
from fleetwatch.stack import ensure_up
from registry import DeviceEntry, register
from store.db import connect
from store.migrate import migrate
from store.registry import OrgRow

# Benchmarks drive the services over scratch topics that their own Kafka ACLs rightly do not
# cover: every client acts as the tooling principal, as in the tests (tests/conftest.py).
os.environ.setdefault("FLEETWATCH_KAFKA_AS", "admin")

console = Console()
FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))


def fixes(device_id: str, vehicle_id: str, start_seq: int, n: int) -> bytes:
    base = datetime.now(UTC) - timedelta(minutes=10)
    lines = []
    for i in range(n):
        seq = start_seq + i
        fix = {
            "v": 1, "device_id": device_id, "vehicle_id": vehicle_id,
            "ts": (base + timedelta(milliseconds=seq)).isoformat(),
            "lat": 32.04 + seq * 1e-6, "lon": 118.78, "speed_kmh": 40.0, "heading": 90,
            "acc": True, "seq": seq,
        }  # fmt: skip
        lines.append(orjson.dumps(fix))
    return b"\n".join(lines) + b"\n"


def publish_backlog(
    settings: Settings, devices: list[tuple[str, str, str]], per_device: int, start_seq: int
) -> float:
    """Every device publishes ``per_device`` fixes at QoS 1 (one mosquitto_pub each); returns fixes/s."""
    started = time.monotonic()
    procs = []
    for device_id, vehicle_id, password in devices:
        argv = ["mosquitto_pub", "-V", "5", "-q", "1", "-h", settings.mqtt_host,
                "-p", str(settings.mqtt_port), "-u", device_id, "-P", password,
                "-t", settings.telemetry_topic(device_id), "-l"]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
        procs.append((proc, fixes(device_id, vehicle_id, start_seq, per_device)))
    for proc, data in procs:
        proc.communicate(data, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"mosquitto_pub exited with {proc.returncode}")
    return per_device * len(devices) / (time.monotonic() - started)


class TopicCounter:
    """Sum of a topic's end offsets, polled cheaply through one consumer."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = make_consumer(settings, group_id=None)
        parts = None
        while not parts:
            parts = self.consumer.partitions_for_topic(topic)
        self.parts = [TopicPartition(topic, p) for p in parts]

    def count(self) -> int:
        return sum(self.consumer.end_offsets(self.parts).values())

    def time_drain(
        self,
        n: int,
        finished: Callable[[], bool] = lambda: False,
        started_at: float | None = None,
        timeout_s: float = 600,
    ) -> tuple[float, float]:
        """Wait until ``n`` records are in (or the producer ``finished``); returns (span s, records/s).

        The span runs from ``started_at`` if given, else from the first record seen (so a
        process's start-up, e.g. Python imports, is not counted as transfer time).
        """
        deadline = time.monotonic() + timeout_s
        first_at = first_count = None
        while True:
            was_finished = finished()
            got = self.count()
            now = time.monotonic()
            if first_at is None and got > 0:
                first_at, first_count = now, got
            if got >= n or (was_finished and got > 0):
                assert first_at is not None and first_count is not None
                if started_at is not None:
                    span = max(now - started_at, 1e-3)
                    return span, got / span
                span = max(now - first_at, 1e-3)
                return span, (got - first_count) / span if got > first_count else got / span
            if now > deadline:
                raise TimeoutError(f"only {got} of {n} records after {timeout_s} s")
            time.sleep(0.05)

    def close(self) -> None:
        self.consumer.close()


def run_baseline(
    settings: Settings, devices: list[tuple[str, str, str]], per_device: int, topic: str, tag: str
) -> tuple[float, float, float]:
    client_id = f"bench-base-{tag}"
    password = settings.secret("mqtt_bridge_password")
    sub = ["mosquitto_sub", "-V", "5", "-q", "1", "-h", settings.mqtt_host, "-p", str(settings.mqtt_port),
           "-u", settings.mqtt_bridge_user, "-P", password,
           # The bridge's account may only take shared subscriptions: the same shape as the bridge's.
           "-t", f"$share/bench-base-{tag}/{settings.mqtt_topic_prefix}/+"]  # fmt: skip
    # Create the persistent session (subscription), leave, let the backlog queue up.
    subprocess.run(
        # -W 1 ends it after a second; its "Timed out" on stderr is the expected way out.
        [*sub, "-c", "-i", client_id, "-x", "600", "-W", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    rate_pub = publish_backlog(settings, devices, per_device, 0)
    console.print(f"baseline backlog published ({rate_pub:,.0f} fixes/s)")
    counter = TopicCounter(settings, topic)
    # kcat -P only flushes a partly filled stdin buffer at EOF, so mosquitto_sub stops after the
    # backlog (-C); line-buffered so nothing waits in mosquitto_sub's stdio buffer either.
    total = per_device * len(devices)
    # kcat emits in large bursts, so "first record seen" would flatter it: time from launch.
    started_at = time.monotonic()
    mq = subprocess.Popen(
        ["stdbuf", "-oL", *sub, "-c", "-i", client_id, "-x", "600", "-C", str(total)], stdout=subprocess.PIPE
    )
    kc = subprocess.Popen(["kcat", *kcat_args(settings, "admin"), "-P", "-t", topic], stdin=mq.stdout)
    assert mq.stdout is not None
    mq.stdout.close()
    cpu_before = children_cpu_s()
    try:
        span, rate = counter.time_drain(total, finished=lambda: kc.poll() is not None, started_at=started_at)
    finally:
        mq.send_signal(signal.SIGTERM)
        mq.wait(10)
        kc.wait(30)
        counter.close()
        cpu = children_cpu_s() - cpu_before  # mosquitto_sub + kcat, both reaped now
        # End the session so nothing keeps queueing for it.
        subprocess.run(
            [*sub, "-i", client_id, "-x", "0", "-W", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    return span, rate, cpu


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_paho_only(
    settings: Settings, devices: list[tuple[str, str, str]], per_device: int, tag: str
) -> tuple[float, float, float]:
    """The ceiling of any paho-based bridge in one process: a bare paho client (same account,
    shared subscription, MQTT 5, Receive Maximum 1000) that PUBACKs each message on arrival,
    with no parsing and no Kafka. Returns (span s, messages/s, CPU s) from first to last message."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    total = per_device * len(devices)
    seen: list[float] = []
    done = threading.Event()
    subscribed = threading.Event()

    def client(expiry: int) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{tag}", protocol=mqtt.MQTTv5)
        c.username_pw_set(settings.mqtt_bridge_user, settings.secret("mqtt_bridge_password"))
        c.manual_ack_set(True)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = expiry
        props.ReceiveMaximum = 1000
        c.on_subscribe = lambda *_: subscribed.set()
        c.connect(settings.mqtt_host, settings.mqtt_port, clean_start=False, properties=props)
        return c

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        c.ack(msg.mid, msg.qos)
        seen.append(time.monotonic())
        if len(seen) >= total:
            done.set()

    setup = client(600)
    setup.loop_start()
    setup.subscribe(f"$share/bench-paho-{tag}/{settings.mqtt_topic_prefix}/+", qos=1)
    subscribed.wait(10)
    setup.disconnect()
    setup.loop_stop()
    rate_pub = publish_backlog(settings, devices, per_device, 2 * per_device)
    console.print(f"paho-only backlog published ({rate_pub:,.0f} fixes/s)")
    cpu_before = time.process_time()
    drain = client(0)  # the session ends when this connection does
    drain.on_message = on_message
    drain.loop_start()
    try:
        if not done.wait(300):
            raise TimeoutError(f"paho-only drain got {len(seen)} of {total}")
    finally:
        drain.disconnect()
        drain.loop_stop()
    cpu = time.process_time() - cpu_before
    span = max(seen[-1] - seen[0], 1e-3)
    return span, (len(seen) - 1) / span, cpu


def run_bridge(
    settings: Settings,
    devices: list[tuple[str, str, str]],
    per_device: int,
    topic: str,
    dlq: str,
    tag: str,
    log: Path,
    profile: Path | None = None,
    pythonpath: Path | None = None,
) -> tuple[float, float, float]:
    argv = [FLEETWATCH, "ingest", "--instance", f"bench-{tag}", "--share-group", f"bench-{tag}",
            "--topic", topic, "--dlq-topic", dlq, "--log-interval", "0",
            "--session-expiry", "600"]  # fmt: skip

    # Another checkout's bridge code (e.g. `git worktree add /tmp/before <commit>`) for before/after.
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else None

    def start(extra: list[str]) -> subprocess.Popen[bytes]:
        with log.open("ab") as fh:
            proc = subprocess.Popen([*argv, *extra], stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while "bridge running" not in log.read_text(errors="replace").split("=== start")[-1]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bridge did not start; log: {log}")
            time.sleep(0.1)
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        if proc.wait(60) != 0:
            raise RuntimeError(f"bridge exited with {proc.returncode}; log: {log}")

    log.write_text("=== start (create session)\n")
    stop(start([]))  # session + shared subscription exist; messages now queue for it
    rate_pub = publish_backlog(settings, devices, per_device, per_device)
    console.print(f"bridge backlog published ({rate_pub:,.0f} fixes/s)")
    counter = TopicCounter(settings, topic)
    with log.open("a") as fh:
        fh.write("=== start (drain)\n")
    proc = start(["--leave"])
    spy = None
    if profile is not None:
        # py-spy samples every thread (cProfile would see only the main one, which just waits).
        spy = subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(proc.pid),
             "--format", "raw", "--rate", "200", "--nonblocking", "--gil", "-o", str(profile)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    cpu_before = process_cpu_s(proc.pid)
    try:
        span, rate = counter.time_drain(per_device * len(devices))
        return span, rate, process_cpu_s(proc.pid) - cpu_before
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        stop(proc)
        counter.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixes", type=int, default=40_000, help="fixes per side (default 40000)")
    parser.add_argument("--devices", type=int, default=20, help="publishing devices (default 20)")
    parser.add_argument(
        "--profile", type=Path, help="sample the draining bridge with py-spy into this collapsed-stack file"
    )
    parser.add_argument(
        "--compare-with",
        type=Path,
        help="also drain with the bridge of this checkout (PYTHONPATH), e.g. the commit before a change",
    )
    args = parser.parse_args()
    if args.profile and not Path(sys.executable).with_name("py-spy").exists():
        sys.exit("--profile needs py-spy in the venv: .venv/bin/pip install py-spy")
    for tool in ("mosquitto_pub", "mosquitto_sub", "kcat"):
        if shutil.which(tool) is None:
            sys.exit(
                f"{tool} is not installed "
                "(`fleetwatch stack up` installs mosquitto-clients; apt-get install kcat)"
            )
    settings = Settings()
    ensure_up(settings)
    tag = uuid.uuid4().hex[:8]
    per_device = max(1, args.fixes // args.devices)
    devices = [(f"bench-{tag}-{i:03d}", f"苏Y{tag[:6]}{i:03d}", f"pw-{tag}-{i}") for i in range(args.devices)]
    with connect(settings) as conn:
        migrate(conn)
    bench_org = OrgRow("bench", "benchmark devices", None)
    register(settings, [DeviceEntry(d, v, bench_org.org_id, None, p) for d, v, p in devices], [bench_org])
    names = ("baseline", "bridge", "before", "dlq")
    base_topic, bridge_topic, before_topic, dlq_topic = (f"bench.ingest.{tag}.{s}" for s in names)
    for name, parts in ((base_topic, 6), (bridge_topic, 6), (before_topic, 6), (dlq_topic, 1)):
        create_topic(settings, name, parts)
    log = Path(tempfile.gettempdir()) / f"bench_ingest_{tag}.log"
    n = per_device * args.devices
    console.print(
        f"[bold]bench_ingest[/]: {n:,} fixes from {args.devices} devices per side, "
        f"run {tag}, cpus={os.cpu_count()}"
    )
    # (pipeline, guarantee, (span s, fixes/s, CPU s))
    rows: list[tuple[str, str, tuple[float, float, float]]] = []
    try:
        rows.append(("mosquitto_sub | kcat -P (baseline)", "none (acked on receipt)",
                     run_baseline(settings, devices, per_device, base_topic, tag)))  # fmt: skip
        rows.append(("bare paho client (ceiling of one process)", "PUBACK on receipt, no Kafka",
                     run_paho_only(settings, devices, per_device, tag)))  # fmt: skip
        if args.compare_with:
            before_log = log.with_name(log.stem + "_before.log")
            before = run_bridge(settings, devices, per_device, before_topic, dlq_topic, f"{tag}-before",
                                before_log, pythonpath=args.compare_with)  # fmt: skip
            rows.append((f"fleetwatch ingest ({args.compare_with})", "PUBACK after Kafka acks=all", before))
        rows.append(("fleetwatch ingest", "PUBACK after Kafka acks=all", run_bridge(
            settings, devices, per_device, bridge_topic, dlq_topic, tag, log, args.profile
        )))  # fmt: skip
    finally:
        for name in (base_topic, bridge_topic, before_topic, dlq_topic):
            delete_topic(settings, name)

    table = Table(title=f"MQTT -> Kafka throughput, {n:,} queued fixes (bridge log {log})")
    for column in ("pipeline", "guarantee", "fixes/s", "drain s", "CPU s", "CPU µs/fix"):
        table.add_column(column, justify="left" if column in ("pipeline", "guarantee") else "right")
    for pipeline, guarantee, (span, rate, cpu) in rows:
        per_fix = f"{cpu / n * 1e6:.0f}"
        table.add_row(pipeline, guarantee, f"{rate:,.0f}", f"{span:.2f}", f"{cpu:.2f}", per_fix)
    console.print(table)
    base_rate, paho_rate = rows[0][2][1], rows[1][2][1]
    for pipeline, _, (_, rate, cpu) in rows[1:]:
        console.print(f"ratio {pipeline} / baseline = {rate / base_rate:.2f} (CPU per fix: "
                      f"{cpu / max(rows[0][2][2], 1e-3):.1f}x the baseline's)")  # fmt: skip
    console.print(f"ratio bridge/baseline = {rows[-1][2][1] / base_rate:.2f}; "
                  f"bridge/paho-alone = {rows[-1][2][1] / paho_rate:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
