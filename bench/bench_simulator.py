"""Simulator throughput: dataset generation, and publishing into Mosquitto, as ratios to baselines.

Generation baseline: just serialising the same number of fixes with orjson (the floor any
simulator pays). Publishing baseline: one process, one svc-admin connection; compared with the
load setup (several processes x connections) and with realistic per-device connections.

    .venv/bin/python bench/bench_simulator.py [--vehicles 1000] [--messages 60000] [--no-mqtt]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from rich.console import Console
from rich.table import Table

from fleetwatch.settings import Settings
from simulator import _mqtt
from simulator._dataset import Dataset, build_fleet

console = Console()


def _outgoing(ds: Dataset, limit: int, shard: int = 0, shards: int = 1) -> list[_mqtt.Outgoing]:
    out = []
    for n, (v, m) in enumerate(ds.messages()):
        if n >= limit:
            break
        if v.index % shards == shard:
            out.append(_mqtt.Outgoing(v.device_id, m.payload))
    return out


def bench_generation(vehicles: int) -> tuple[Dataset, Table]:
    t0 = time.perf_counter()
    ds = build_fleet(vehicles, seed=1)
    gen = time.perf_counter() - t0
    n = ds.count()
    payloads = [orjson.loads(m.payload) for s in ds.streams[: max(1, vehicles // 10)] for m in s]
    t0 = time.perf_counter()
    reps = max(1, n // max(1, len(payloads)))
    for _ in range(reps):
        for p in payloads:
            orjson.dumps(p)
    base = (time.perf_counter() - t0) / (reps * len(payloads)) * n
    table = Table(title=f"generation: {vehicles:,} vehicles x 1 day")
    for col in ("what", "seconds", "fixes/s", "ratio to baseline"):
        table.add_column(col, justify="right")
    table.add_row("baseline: orjson.dumps only", f"{base:.2f}", f"{n / base:,.0f}", "1.00")
    table.add_row(
        "simulate (motion, truth, encode)", f"{gen:.2f}", f"{n / gen:,.0f}", f"{gen / base:.1f}x slower"
    )
    return ds, table


def bench_publish(ds: Dataset, messages: int, profile: bool) -> Table:
    settings = Settings()
    devices = {v.device_id: v.password for v in ds.world.vehicles}
    from simulator.cli import register_world
    from store.db import connect
    from store.migrate import migrate

    with connect(settings) as conn:
        migrate(conn)
    register_world(settings, ds.world)
    table = Table(title=f"publishing {messages:,} fixes into Mosquitto (QoS 1)")
    for col in ("setup", "acked", "failed", "seconds", "acked/s", "ratio to baseline"):
        table.add_column(col, justify="right")
    runs: list[tuple[str, _mqtt.PublishStats]] = []

    msgs = _outgoing(ds, messages)
    broker = _broker_pid(settings)
    profiles: list[cProfile.Profile] = []
    original = mqtt.Client._thread_main
    if profile:
        # profile paho's network thread too: that is where PUBACKs are read and bookkept
        def profiled(self: mqtt.Client) -> None:
            p = cProfile.Profile()
            profiles.append(p)
            p.enable()
            try:
                original(self)
            finally:
                p.disable()

        mqtt.Client._thread_main = profiled  # type: ignore[method-assign]
        profiles.append(cProfile.Profile())
        profiles[0].enable()
    cpu0, b0 = _own_cpu(), _cpu_of(broker)
    runs.append(
        ("baseline: 1 process, 1 svc-admin conn", _mqtt.publish(settings, msgs, devices, admin_connections=1))
    )
    cpu1, b1 = _own_cpu(), _cpu_of(broker)
    if profile:
        profiles[0].disable()
        mqtt.Client._thread_main = original  # type: ignore[method-assign]
    secs = runs[0][1].seconds
    cpu_note = (
        f"baseline run: publisher process {cpu1 - cpu0:.1f} CPU-s, mosquitto {b1 - b0:.1f} CPU-s "
        f"over {secs:.1f} s wall ({(cpu1 - cpu0) / secs:.0%} and {(b1 - b0) / secs:.0%} of one core)"
    )
    runs.append(
        (
            "2 processes x 2 svc-admin conns",
            _mqtt.publish_parallel(
                settings,
                lambda i, n: _outgoing(ds, messages, i, n),
                devices,
                processes=2,
                admin_connections=2,
            ),
        )
    )
    few = {d: p for d, p in list(devices.items())[:100]}
    per_device = [m for m in msgs if m.device_id in few]
    runs.append(
        (f"1 process, per-device conns ({len(few)} devices)", _mqtt.publish(settings, per_device, few)),
    )
    base = runs[0][1].rate
    for name, st in runs:
        table.add_row(
            name,
            f"{st.acked:,}",
            f"{st.failed:,}",
            f"{st.seconds:.1f}",
            f"{st.rate:,.0f}",
            f"{st.rate / base:.2f}",
        )
    if profiles:
        buf = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=buf)
        for p in profiles[1:]:
            stats.add(p)
        stats.sort_stats("tottime").print_stats(14)
        console.print("[bold]one publishing process, main + paho network thread (cProfile, by own time):[/]")
        console.print(buf.getvalue().split("\n\n", 1)[-1][:3500])
    console.print(cpu_note)
    return table


def _broker_pid(settings: Settings) -> int | None:
    from fleetwatch.stack import status

    return next((s.pid for s in status(settings) if s.service == "mosquitto"), None)


def _cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=60000)
    parser.add_argument("--no-mqtt", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the baseline publisher")
    args = parser.parse_args()
    ds, gen = bench_generation(args.vehicles)
    console.print(gen)
    if not args.no_mqtt:
        console.print(bench_publish(ds, args.messages, args.profile))


if __name__ == "__main__":
    main()
