"""Benchmark: one `fleetwatch worker` draining a topic that holds a fleet day, same run as its baselines.

    export FLEETWATCH_KAFKA_BOOTSTRAP=...   # the stack's Kafka (`fleetwatch stack up`)
    .venv/bin/python bench/bench_worker.py [--vehicles 1000] [--duration 1d] [--keep]

1. `simulate fleet` writes the day; every line goes onto a fresh 6-partition topic keyed by
   vehicle_id (kafka-python, lz4 batches, as the bridge writes them).
2. Baselines over the very same records: a bare aiokafka consume loop (no processing), and
   `detect_lines` (the detection core offline: parse + all detectors) over the values read back,
   run before and again after the worker (the ratio uses the mean of the two).
3. One worker (all detectors, default settings) drains the topic from the beginning: fixes/s from
   "ready" until its committed offsets reach the end; the changelog bytes it wrote per fix;
   its RSS (current and peak) per 1,000 vehicles. The machine may be shared: the CPU time of
   detect and of the worker process (all threads) gives a ratio that other load does not move,
   and the load average during the worker's run is printed with the figures (on a busy shared
   machine both ratios still move from run to run: run it several times, take the median).
4. Recovery: the worker is restarted on the same group; the time faust takes to restore every
   vehicle's state from the changelog (its "Restoring state" -> "Recovery complete" log lines)
   and from process start to ready.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from rich.console import Console
from rich.table import Table

from fleetwatch import topics
from fleetwatch.kafka_auth import client_security
from fleetwatch.kafka_io import (
    create_topic,
    delete_topic,
    end_offsets,
    make_consumer,
    make_producer,
    read_topic,
)
from fleetwatch.records import parse_order
from fleetwatch.settings import Settings
from geofence import load_rules
from streams.core import Context, DetectionResult, OrderBook, detect_lines
from streams.worker.app import internal_topics

# Benchmarks drive the services over scratch topics that their own Kafka ACLs rightly do not
# cover: every client acts as the tooling principal, as in the tests (tests/conftest.py).
os.environ.setdefault("FLEETWATCH_KAFKA_AS", "admin")

console = Console()
EXE = str(Path(sys.executable).parent / "fleetwatch")
_NO_FUTURE = datetime(9999, 1, 1).astimezone()


def _generate(directory: Path, vehicles: int, duration: str, start: str | None) -> None:
    cmd = [EXE, "simulate", "fleet", "--vehicles", str(vehicles), "--duration", duration]
    cmd += ["--out", str(directory), *(["--start", start] if start else [])]
    subprocess.run(cmd, check=True, capture_output=True)


def _load_topic(settings: Settings, topic: str, lines: list[bytes]) -> None:
    producer = make_producer(settings, client_id="bench-worker", linger_ms=20, batch_size=512 * 1024)
    for raw in lines:
        try:
            key = str(orjson.loads(raw)["vehicle_id"]).encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = b"malformed"
        producer.send(topic, key=key, value=raw)
    producer.flush(300)
    producer.close()


async def _bare_consume(settings: Settings, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
        **client_security(settings, "admin"),
    )  # fmt: skip
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(end_offsets(settings, topic))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        t0 = time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
            seen += sum(len(records) for records in batches.values())
        return time.perf_counter() - t0
    finally:
        await consumer.stop()


def _committed(probe: KafkaConsumer, parts: list[KTopicPartition]) -> int:
    """The group's committed offsets, summed (read without joining the group)."""
    return sum(probe.committed(tp) or 0 for tp in parts)


def _rss_kb(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss, peak


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_worker(
    env: dict[str, str], log: Path, argv: list[str], name: str
) -> tuple[subprocess.Popen[bytes], float]:
    started = time.perf_counter()
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [EXE, "worker", "--name", name, *argv], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    while f"worker {name} started" not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}; see {log}")
        time.sleep(0.05)
    return proc, time.perf_counter() - started


def _log_time(line: str) -> float:
    stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", line)
    assert stamp is not None, line
    return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _recovery_seconds(log: Path) -> float:
    lines = log.read_text(errors="replace").splitlines()
    begin = [_log_time(x) for x in lines if "Restoring state from changelog topics" in x]
    end = [_log_time(x) for x in lines if "Recovery complete" in x]
    return end[-1] - begin[-1] if begin and end else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--duration", default="1d")
    parser.add_argument(
        "--start", default=None, help="simulated start, RFC 3339 (default: a working day 00:00)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench topics and files")
    args = parser.parse_args()
    settings = Settings()
    tag = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    telemetry, orders_topic, group = f"bench.{tag}.telemetry", f"bench.{tag}.orders", f"bench-worker-{tag}"

    with console.status(f"simulating {args.vehicles} vehicles, {args.duration}"):
        _generate(work / "world", args.vehicles, args.duration, args.start)
    lines = [x for x in (work / "world" / "fixes.jsonl").read_bytes().splitlines() if x.strip()]
    create_topic(settings, telemetry, topics.TELEMETRY_PARTITIONS)
    create_topic(settings, orders_topic, topics.TELEMETRY_PARTITIONS)
    with console.status(f"loading {len(lines):,} records onto {telemetry}"):
        _load_topic(settings, telemetry, lines)
    total = sum(end_offsets(settings, telemetry).values())

    with console.status("bare aiokafka consume loop"):
        bare_s = asyncio.run(_bare_consume(settings, telemetry, total))
    with console.status("reading the records back"):
        values = [bytes(r.value) for r in read_topic(settings, telemetry, timeout_s=300)]
        rules = load_rules(work / "world" / "rules.yaml")
        orders_path = work / "world" / "orders.jsonl"
        book = (
            OrderBook.of(parse_order(x) for x in orders_path.read_bytes().splitlines() if x.strip())
            if orders_path.exists()
            else OrderBook()
        )

    def run_detect() -> tuple[DetectionResult, float, float]:
        t0, cpu0 = time.perf_counter(), time.process_time()
        result = detect_lines(values, Context(rules, book), now=_NO_FUTURE)
        return result, time.perf_counter() - t0, time.process_time() - cpu0

    with console.status("detect over the same records"):
        result, detect_before_s, detect_before_cpu_s = run_detect()

    env = {
        **os.environ,
        "FLEETWATCH_WORKER_APP_ID": group,
        "FLEETWATCH_WORKER_DATA_DIR": str(work / "worker-data"),
        "FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS": str(10**9),
    }
    argv = [
        "--config",
        str(work / "world" / "rules.yaml"),
        "--telemetry-topic",
        telemetry,
        "--orders-topic",
        orders_topic,
    ]
    log = work / "worker.log"
    proc, _ = _start_worker(env, log, argv, "bench")
    probe = make_consumer(settings, group_id=group)
    parts = [KTopicPartition(telemetry, p) for p in sorted(end_offsets(settings, telemetry))]
    t0, cpu0 = time.perf_counter(), _cpu_s(proc.pid)
    load = [os.getloadavg()[0]]
    peak_rss = 0
    with console.status("worker draining the topic") as status:
        while (done := _committed(probe, parts)) < total:
            status.update(f"worker draining the topic: {done:,} / {total:,}")
            peak_rss = max(peak_rss, _rss_kb(proc.pid)[0])
            load.append(os.getloadavg()[0])
            time.sleep(0.5)
    worker_s, worker_cpu_s = time.perf_counter() - t0, _cpu_s(proc.pid) - cpu0
    probe.close()
    rss_kb, hwm_kb = _rss_kb(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    text = log.read_text(errors="replace")
    writes = re.findall(r"state writes\s*│\s*([\d,]+) \(([\d,]+) bytes\)", text)
    state_writes, state_bytes = (int(x.replace(",", "")) for x in writes[-1]) if writes else (0, 0)
    fixes = result.fixes
    # detect again, after the worker: the baseline is the mean of both runs, so load that changes
    # over the run moves both sides alike
    with console.status("detect over the same records, again"):
        _, detect_after_s, detect_after_cpu_s = run_detect()
    detect_s = (detect_before_s + detect_after_s) / 2
    detect_cpu_s = (detect_before_cpu_s + detect_after_cpu_s) / 2

    restart_log = work / "worker-restart.log"
    proc2, ready_s = _start_worker(env, restart_log, argv, "bench2")
    recovery_s = _recovery_seconds(restart_log)
    proc2.send_signal(signal.SIGTERM)
    proc2.wait(120)

    per_k = 1000 / args.vehicles
    table = Table(
        title=f"bench_worker: {args.vehicles} vehicles x {args.duration}, "
        f"{total:,} records ({fixes:,} valid fixes)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("bare aiokafka consume loop", f"{total / bare_s:,.0f} records/s", "")
    table.add_row(
        "detect (core offline, same records; before / after the worker)",
        f"{total / detect_before_s:,.0f} / {total / detect_after_s:,.0f} records/s",
        "mean: 1.00 (baseline)",
    )
    table.add_row("worker (1 process, all detectors)", f"{total / worker_s:,.0f} records/s",
                  f"{detect_s / worker_s:.2f} of detect; {bare_s / worker_s:.3f} of bare")  # fmt: skip
    # CPU time moves less than wall time with what else the machine runs meanwhile (not nothing:
    # on a loaded 2-core box CPU rates were seen to vary 2x between runs)
    table.add_row(
        "detect: CPU time (mean)", f"{total / detect_cpu_s:,.0f} records per CPU-s", "1.00 (baseline)"
    )
    table.add_row(
        "worker: CPU time (all its threads)",
        f"{total / worker_cpu_s:,.0f} records per CPU-s",
        f"{detect_cpu_s / worker_cpu_s:.2f} of detect",
    )
    table.add_row("load average while the worker ran", f"{statistics.median(load):.1f} (median)",
                  f"{min(load):.1f}-{max(load):.1f}; {os.cpu_count()} CPUs")  # fmt: skip
    table.add_row("changelog writes", f"{state_writes:,} ({state_writes / max(fixes, 1):.3f} per fix)", "")
    table.add_row(
        "changelog bytes per fix",
        f"{state_bytes / max(fixes, 1):,.0f} B",
        f"{state_bytes / 1e6:,.0f} MB total",
    )
    table.add_row(
        "worker RSS per 1,000 vehicles (end / peak)",
        f"{rss_kb * per_k / 1024:,.0f} / {hwm_kb * per_k / 1024:,.0f} MB",
        "",
    )
    table.add_row(
        "recovery: restore every vehicle's state", f"{recovery_s:.1f} s", f"{args.vehicles} vehicles"
    )
    table.add_row("restart: process start -> ready", f"{ready_s:.1f} s", "")
    console.print(table)

    if not args.keep:
        for name in (telemetry, orders_topic, *internal_topics(group)):
            delete_topic(settings, name)
    console.print(f"work files: {work}")


if __name__ == "__main__":
    main()
