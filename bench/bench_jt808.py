"""JT/T 808 gateway: decode cost, acknowledged frames per gateway CPU-second, and 10,000 live terminals.

Three parts, each printing a ratio against a baseline measured in the same run:

1. decode: frames/s through unescape + check code + header + 0x0200 body + fix v1 validation,
   against `parse_fix` on the same fixes as JSON (what the MQTT bridge does per message).
2. throughput: a gateway process (per-connection rate limit lifted) is fed 0x0200 frames by
   pipelining terminals; every frame counts once its 0x8001 came back, i.e. once Kafka had
   the fix. Figure: acknowledged frames per gateway CPU-second (= per core). Baseline: an
   the same kafka-python producer (acks=all, idempotent, lz4) sending the same records, per CPU-second.
3. fleet: N terminals (default 10,000) connect and authenticate, then each sends one 0x0200
   every 10 s for the measuring window; gateway RSS and CPU, reply latency, failures.

The bench terminals are registered through the product's registry (org `bench`, no MQTT
accounts: JT/T 808 terminals use the gateway's auth code); the gateway, with its own auth
secret, reads them from the registry topic; its fixes land in the telemetry topic (vehicle ids
BENCH-*).

    .venv/bin/python bench/bench_jt808.py [--terminals 10000] [--window 60] [--skip-fleet]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fleetwatch import topics
from fleetwatch.kafka_io import make_producer
from fleetwatch.records import parse_fix
from fleetwatch.settings import Settings
from ingest.jt808 import messages as m
from ingest.jt808.codec import FrameSplitter, Header, decode_frame, encode_frame
from ingest.jt808.mapping import location_to_fix
from ingest.jt808.server import auth_code_for
from registry import DeviceEntry, register
from store.db import connect
from store.migrate import migrate
from store.registry import OrgRow

console = Console()
FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))
SECRET = "bench-secret"
BENCH_ORG = OrgRow("bench", "benchmark terminals", None)
TICK = os.sysconf("SC_CLK_TCK")


def _location(i: int) -> m.Location:
    when = (datetime.now(UTC) - timedelta(seconds=120 - (i % 100))).replace(microsecond=0)
    return m.Location(
        alarm=0, status=3, lat=32.04 + (i % 1000) * 1e-5, lon=118.78, alt_m=12, speed_kmh=40.5,
        heading=90, time=when.astimezone(m.BEIJING), mileage_km=1234.5, signal=20, sats=11,
    )  # fmt: skip


# ------------------------------------------------------------------ 1. decode


def bench_decode(n: int) -> tuple[float, float]:
    frames = [encode_frame(Header(m.LOCATION, "13900000001", i & 0xFFFF), m.encode_location(_location(i)))
              for i in range(n)]  # fmt: skip
    limits = {"max_future": timedelta(minutes=5), "max_speed_kmh": 250.0}
    now = datetime.now(UTC)
    started = time.perf_counter()
    fixes = []
    for wire in frames:
        frame = decode_frame(wire[1:-1])
        loc = m.decode_location(frame.body)
        fixes.append(location_to_fix(loc, device_id="13900000001", vehicle_id="苏A00001", now=now, **limits))
    decode_rate = n / (time.perf_counter() - started)
    payloads = [f.to_json() for f in fixes]
    started = time.perf_counter()
    for payload in payloads:
        parse_fix(payload, now=now, **limits)
    json_rate = n / (time.perf_counter() - started)
    return decode_rate, json_rate


# ------------------------------------------------------------------ gateway process


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def register_bench_terminals(phones: list[str]) -> None:
    """Terminal number -> BENCH-<last 6 digits>, through `fleetwatch devices add`'s path."""
    settings = Settings()
    with connect(settings) as conn:
        migrate(conn)
    entries = [DeviceEntry(p, f"BENCH-{p[-6:]}", BENCH_ORG.org_id) for p in phones]
    register(settings, entries, [BENCH_ORG], mqtt_accounts=False)


class GatewayProcess:
    def __init__(self, phones: list[str], work: Path, **env: str) -> None:
        register_bench_terminals(phones)
        self.log = work / f"gateway-{len(phones)}.log"
        environment = {
            **os.environ, "COLUMNS": "200",
            "FLEETWATCH_JT808_AUTH_SECRET": SECRET, "FLEETWATCH_JT808_IDLE_TIMEOUT_S": "600", **env,
        }  # fmt: skip
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [FLEETWATCH, "jt808", "--host", "127.0.0.1", "--port", "0", "--log-interval", "0"],
                stdout=fh, stderr=subprocess.STDOUT, env=environment,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (
            bound := re.search(r"listening\s+│?\s*127\.0\.0\.1:(\d+)", self.log.read_text(errors="replace"))
        ):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{self.log.read_text()}")
            time.sleep(0.2)
        self.port = int(bound.group(1))  # port 0: the gateway bound a free one itself

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(120)
        return self.log.read_text(errors="replace")


# ------------------------------------------------------------------ terminal connections


class BenchTerminal:
    """A minimal terminal: authenticate, then send reports and count replies (pipelined or timed)."""

    def __init__(self, phone: str) -> None:
        self.phone = phone
        self.flow = 0
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.acked = 0
        self.refused = 0
        self.window = asyncio.Semaphore(1)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.authenticated = asyncio.Event()
        self.receiver: asyncio.Task[None] | None = None

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.receiver = asyncio.create_task(self._receive())
        self.send(m.AUTHENTICATE, auth_code_for(SECRET, self.phone).encode())
        await asyncio.wait_for(self.authenticated.wait(), 120)

    def send(self, msg_id: int, body: bytes) -> int:
        assert self.writer is not None
        self.flow = (self.flow + 1) & 0xFFFF
        self.sent_at[self.flow] = time.monotonic()
        self.writer.write(encode_frame(Header(msg_id, self.phone, self.flow), body))
        return self.flow

    async def _receive(self) -> None:
        assert self.reader is not None
        splitter = FrameSplitter()
        while data := await self.reader.read(4096):
            for content in splitter.feed(data)[0]:
                flow, msg_id, result = m.decode_general_response(decode_frame(content).body)
                started = self.sent_at.pop(flow, None)
                if msg_id == m.AUTHENTICATE:
                    self.authenticated.set()
                    continue
                if started is not None:
                    self.latencies.append(time.monotonic() - started)
                if result == m.RESULT_OK:
                    self.acked += 1
                else:
                    self.refused += 1
                self.window.release()


async def _pipeline(port: int, phones: list[str], window: int, seconds: float) -> tuple[int, list[float]]:
    terminals = [BenchTerminal(p) for p in phones]
    for t in terminals:
        t.window = asyncio.Semaphore(window)
    await asyncio.gather(*(t.connect(port) for t in terminals))
    bodies = [m.encode_location(_location(i)) for i in range(200)]
    stop_at = time.monotonic() + seconds

    async def pump(t: BenchTerminal) -> None:
        i = 0
        while time.monotonic() < stop_at:
            await t.window.acquire()
            t.send(m.LOCATION, bodies[i % len(bodies)])
            i += 1

    await asyncio.gather(*(pump(t) for t in terminals))
    await asyncio.sleep(2)  # let the last replies in
    return sum(t.acked for t in terminals), [x for t in terminals for x in t.latencies]


def bench_throughput(work: Path, connections: int, window: int, seconds: float) -> tuple[float, float, float]:
    phones = [f"1380{i:07d}" for i in range(connections)]
    gateway = GatewayProcess(phones, work, FLEETWATCH_JT808_FRAMES_PER_S="1000000",
                             FLEETWATCH_JT808_BURST_FRAMES="1000000")  # fmt: skip
    try:
        cpu0, t0 = cpu_seconds(gateway.proc.pid), time.monotonic()
        acked, latencies = asyncio.run(_pipeline(gateway.port, phones, window, seconds))
        cpu = cpu_seconds(gateway.proc.pid) - cpu0
        wall = time.monotonic() - t0
    finally:
        gateway.stop()
    console.print(f"  gateway: {acked:,} frames acknowledged in {wall:.1f} s using {cpu:.1f} CPU-s; "
                  f"reply latency p50 {statistics.median(latencies) * 1000:.0f} ms")  # fmt: skip
    return acked / wall, acked / cpu, cpu / wall


def _produce(settings: Settings, n: int) -> None:
    producer = make_producer(settings, client_id="bench-jt808-baseline")
    try:
        limits = {"max_future": timedelta(minutes=5), "max_speed_kmh": 250.0}
        fix = location_to_fix(_location(1), device_id="13800000000", vehicle_id="BENCH-000000",
                              now=datetime.now(UTC), **limits)  # fmt: skip
        for _ in range(n):
            producer.send(topics.TELEMETRY, value=fix.to_json(), key=fix.key)
        producer.flush(60)
    finally:
        producer.close(10)


def bench_producer(settings: Settings, n: int) -> float:
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    _produce(settings, n)  # the sender thread's CPU counts too (RUSAGE_SELF covers all threads)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return n / cpu


# ------------------------------------------------------------------ 3. fleet


async def _fleet(
    port: int, phones: list[str], interval: float, window: float, gateway_pid: int
) -> dict[str, float]:
    terminals = [BenchTerminal(p) for p in phones]
    started = time.monotonic()
    connected = 0
    batch = 500
    for i in range(0, len(terminals), batch):  # ramp up: 500 connections at a time
        await asyncio.gather(*(t.connect(port) for t in terminals[i : i + batch]))
        connected += len(terminals[i : i + batch])
        console.print(f"  connected and authenticated {connected:,}/{len(terminals):,}", end="\r")
    console.print()
    ramp = time.monotonic() - started
    body = m.encode_location(_location(7))
    stop = asyncio.Event()

    async def report(t: BenchTerminal) -> None:
        await asyncio.sleep(random.uniform(0, interval))  # spread the phases
        while not stop.is_set():
            t.send(m.LOCATION, body)
            await asyncio.sleep(interval)

    tasks = [asyncio.create_task(report(t)) for t in terminals]
    await asyncio.sleep(interval)  # every terminal is in its rhythm
    for t in terminals:
        t.latencies.clear()
    acked0 = sum(t.acked for t in terminals)
    cpu0, t0 = cpu_seconds(gateway_pid), time.monotonic()
    client0 = cpu_seconds(os.getpid())
    load = []
    samples = []
    while time.monotonic() - t0 < window:
        await asyncio.sleep(5)
        samples.append(rss_mb(gateway_pid))
        load.append(os.getloadavg()[0])
    cpu = cpu_seconds(gateway_pid) - cpu0
    client_cpu = cpu_seconds(os.getpid()) - client0
    wall = time.monotonic() - t0
    acked = sum(t.acked for t in terminals) - acked0
    stop.set()
    for task in tasks:
        task.cancel()
    latencies = sorted(x for t in terminals for x in t.latencies) or [float("nan")]
    closed = sum(1 for t in terminals if t.reader is not None and t.reader.at_eof())
    return {
        "terminals": len(terminals), "ramp_s": ramp, "acked_per_s": acked / wall, "cpu_pct": 100 * cpu / wall,
        "cpu_ms_per_frame": 1000 * cpu / max(acked, 1), "client_cpu_pct": 100 * client_cpu / wall,
        "load": statistics.mean(load), "rss_mb": max(samples),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "refused": sum(t.refused for t in terminals),
        "closed_by_gateway": closed, "expected_per_s": len(terminals) / interval,
    }  # fmt: skip


def bench_fleet(work: Path, n: int, window: float, interval: float) -> dict[str, float]:
    phones = [f"1390{i:07d}" for i in range(n)]
    gateway = GatewayProcess(phones, work)
    try:
        idle_rss = rss_mb(gateway.proc.pid)
        result = asyncio.run(_fleet(gateway.port, phones, interval, window, gateway.proc.pid))
        result["idle_rss_mb"] = idle_rss
    finally:
        gateway.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decode-frames", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=50, help="pipelining terminals (part 2)")
    parser.add_argument("--pipeline", type=int, default=32, help="unanswered frames per terminal (part 2)")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput window (part 2)")
    parser.add_argument("--terminals", type=int, default=10_000, help="fleet size (part 3)")
    parser.add_argument("--window", type=float, default=60.0, help="fleet measuring window, s (part 3)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between reports (part 3)")
    parser.add_argument("--skip-fleet", action="store_true")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    settings = Settings()
    work = Path(tempfile.mkdtemp(prefix="bench-jt808-"))

    console.rule("1. decode (one core, in process)")
    decode_rate, json_rate = bench_decode(args.decode_frames)
    console.rule("2. acknowledged throughput (gateway process, Kafka acks=all)")
    frames_per_s, per_cpu_s, cores = bench_throughput(work, args.connections, args.pipeline, args.seconds)
    producer_per_cpu_s = bench_producer(settings, 30_000)
    table = Table(title="JT/T 808 gateway: decode and acknowledged throughput")
    for col in ("measure", "value", "baseline (same run)", "ratio"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    table.add_row("decode 0x0200 -> validated fix", f"{decode_rate:,.0f} frames/s",
                  f"parse_fix JSON {json_rate:,.0f}/s", f"{decode_rate / json_rate:.2f}")  # fmt: skip
    table.add_row("acknowledged (0x8001 after Kafka)", f"{per_cpu_s:,.0f} frames/CPU-s",
                  f"kafka-python producer {producer_per_cpu_s:,.0f} rec/CPU-s",
                  f"{per_cpu_s / producer_per_cpu_s:.2f}")  # fmt: skip
    table.add_row(
        "  wall-clock rate, gateway cores used", f"{frames_per_s:,.0f} frames/s", f"{cores:.2f} cores", ""
    )
    console.print(table)

    if args.skip_fleet:
        return
    console.rule(f"3. {args.terminals:,} terminals, one 0x0200 every {args.interval:g} s each")
    fleet = bench_fleet(work, args.terminals, args.window, args.interval)
    table = Table(
        title=f"{args.terminals:,} concurrent JT/T 808 terminals, a report every {args.interval:g} s "
        f"({args.window:.0f} s window)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("ramp-up (connect + authenticate all)", f"{fleet['ramp_s']:.1f} s")
    table.add_row(
        "reports acknowledged / s", f"{fleet['acked_per_s']:,.0f} (offered {fleet['expected_per_s']:,.0f})"
    )
    table.add_row("ratio acknowledged / offered", f"{fleet['acked_per_s'] / fleet['expected_per_s']:.3f}")
    table.add_row(
        "gateway CPU", f"{fleet['cpu_pct']:.1f} % of one core ({fleet['cpu_ms_per_frame']:.2f} ms/report)"
    )
    table.add_row("terminal-side (bench) CPU", f"{fleet['client_cpu_pct']:.1f} % of one core")
    table.add_row("machine load average (2 cores, shared)", f"{fleet['load']:.1f}")
    table.add_row("gateway RSS (idle -> peak)", f"{fleet['idle_rss_mb']:.0f} -> {fleet['rss_mb']:.0f} MB")
    table.add_row("reply latency p50 / p99", f"{fleet['p50_ms']:.0f} / {fleet['p99_ms']:.0f} ms")
    table.add_row("refused / closed by gateway", f"{fleet['refused']:.0f} / {fleet['closed_by_gateway']:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
