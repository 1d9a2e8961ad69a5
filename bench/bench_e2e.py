"""End to end: sustained fixes/s through MQTT -> bridge -> Kafka -> worker -> sink -> TimescaleDB.

Usage (stack up first: `fleetwatch stack up`):
    .venv/bin/python bench/bench_e2e.py [--rate 5000] [--duration 300] [--devices 2000] [--profile auto]

Publishes live fixes (stamped when sent) from `--devices` simulated terminals at `--rate` fixes/s
for `--duration` seconds through the supervised pipeline (`pipeline.supervisor`: bridge, worker,
sink) and measures, in the same run:
- the rate each stage sustained (publisher acks, bridge -> Kafka, worker and sink committed offsets);
- fix time -> its `positions` row (probe vehicles' rows polled every 0.2 s: resolution ~0.2 s);
- violating fix -> its alert row (overspeed episodes; `alert_events.at` of the raise minus the
  alert's `raised_at`, the event time of the fix that made it qualify);
- CPU per stage (/proc of each service, the publisher, Mosquitto, Kafka, PostgreSQL);
- consumer lag per group, the drain time after publishing stops, and sent vs stored (nothing lost).
The stage that falls behind (its lag grows) is sampled with py-spy (`--profile auto`).
The baseline in the same run is the publisher's own acknowledged rate into Mosquitto: each stage's
rate is printed as a ratio of it. Writes a markdown report (`--report`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml
from rich.console import Console

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets
from fleetwatch.settings import Settings
from pipeline.observe import Observer
from pipeline.services import Layout, pipeline_specs, wait_workers_started
from pipeline.supervisor import Supervisor
from simulator import _mqtt
from store.db import connect

console = Console(width=160)
ROOT = Path(__file__).resolve().parents[1]
CENTRE = (32.04, 118.78)  # Nanjing: every bench vehicle drives inside the permitted region
NAMESPACE = "e2e-"
PROBES = 10  # devices whose every fix is looked for in positions
TICK = os.sysconf("SC_CLK_TCK")


def fw(*args: str, log: Path) -> None:
    with log.open("ab") as fh:
        code = subprocess.run(
            [sys.executable, "-m", "fleetwatch", *args], stdout=fh, stderr=subprocess.STDOUT
        ).returncode
    if code:
        sys.exit(f"`fleetwatch {' '.join(args)}` failed ({code}); see {log}")


# --- the world: vehicles registered with the bridge (registry) and the database ------------------------
def prepare_world(
    devices: int, lateness_s: float, work: Path, log: Path
) -> tuple[Path, list[tuple[str, str]]]:
    world = work / f"world-{devices}"
    marker = world / ".registered"
    # the schema, and the sink's login (a fresh stack has the role without its password)
    fw("db", "migrate", log=log)
    if not marker.exists():
        shutil.rmtree(world, ignore_errors=True)
        fw("simulate", "fleet", "--vehicles", str(devices), "--duration", "10m", "--namespace", NAMESPACE,
           "--out", str(world), log=log)  # fmt: skip
        console.print(f"registering {devices:,} devices (bridge registry, database registry)")
        fw("devices", "add", str(world / "devices.csv"), log=log)
        fw("db", "import-registry", str(world / "rules.yaml"), log=log)
        marker.touch()
    rules = yaml.safe_load((world / "rules.yaml").read_text(encoding="utf-8"))
    # The reorder window: fixes are held this long for late ones before detection sees them; the
    # default (600 s) puts every alert ≥ 10 min after its fix by design.
    rules["orgs"][0].setdefault("settings", {})["lateness_seconds"] = lateness_s
    (world / "rules-bench.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True, sort_keys=False))
    pairs = [(v["device_id"], v["vehicle_id"]) for v in rules["vehicles"]]
    return world / "rules-bench.yaml", pairs


# --- live fixes ----------------------------------------------------------------------------------------
@dataclass
class Terminal:
    device_id: str
    vehicle_id: str
    lat: float
    lon: float
    heading: float
    last: float
    seq: int
    speeder: bool
    phase: float

    def next_fix(self) -> bytes:
        """A fix stamped now, the position advanced at the speed reported since the last one."""
        now = time.time()
        speed = 135.0 if self.speeder and (now + self.phase) % 120 < 40 else 50.0
        metres = speed / 3.6 * (now - self.last)
        self.lat += metres * math.cos(math.radians(self.heading)) / 110_574
        self.lon += (
            metres * math.sin(math.radians(self.heading)) / (111_320 * math.cos(math.radians(self.lat)))
        )
        self.last, self.seq = now, self.seq + 1
        return orjson.dumps({
            "v": 1, "device_id": self.device_id, "vehicle_id": self.vehicle_id,
            "ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds"),
            "lat": round(self.lat, 7), "lon": round(self.lon, 7), "speed_kmh": speed,
            "heading": round(self.heading, 1), "acc": True, "seq": self.seq, "fix_valid": True, "sats": 9,
            "alarm": 0,
        })  # fmt: skip


def live_fixes(pairs: list[tuple[str, str]], shard: int, shards: int, seq0: int, overspeed_share: float,
               stop_at: float) -> Iterator[_mqtt.Outgoing]:  # fmt: skip
    """Round-robin over this shard's vehicles, each fix stamped when made. A share of vehicles
    drives 40 s at 135 km/h every 120 s (one overspeed alert per episode)."""
    rng = random.Random(shard)
    terminals = [
        Terminal(device_id, vehicle_id, CENTRE[0] + rng.uniform(-0.05, 0.05),
                 CENTRE[1] + rng.uniform(-0.05, 0.05), rng.uniform(0, 360), time.time(), seq0,
                 rng.random() < overspeed_share, rng.uniform(0, 120))
        for device_id, vehicle_id in pairs[shard::shards]
    ]  # fmt: skip
    while True:
        for t in terminals:
            if time.monotonic() >= stop_at:
                return
            yield _mqtt.Outgoing(t.device_id, t.next_fix())


# --- CPU from /proc --------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, CPU seconds incl. reaped children) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / TICK


def _tree(roots: set[int]) -> set[int]:
    """The roots and all their descendants (PostgreSQL backends are children of the postmaster)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))):
            parents[int(entry.name)] = st[0]
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def stack_roots(stack_dir: Path) -> dict[str, set[int]]:
    """The stack's own Mosquitto, Kafka and PostgreSQL (their command lines name our stack dir)."""
    where = str(stack_dir.resolve())
    roots: dict[str, set[int]] = {"mosquitto": set(), "kafka": set(), "postgres": set()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if where not in cmd:
                continue
            for name in roots:
                if name in cmd or (name == "kafka" and "java" in cmd):
                    roots[name].add(int(entry.name))
                    break
    return roots


@dataclass
class CpuMeter:
    """CPU seconds so far per group of processes (each group: its roots and their descendants),
    plus the publisher processes (this script's other children) and this script itself."""

    groups: dict[str, set[int]]

    def read(self) -> dict[str, float]:
        totals, counted = {}, set()
        for name, roots in self.groups.items():
            tree = _tree(roots)
            counted |= tree
            totals[name] = sum(st[1] for pid in tree if (st := _stat(pid)))
        me = os.getpid()
        publishers = _tree({me}) - counted - {me}
        totals["publisher processes"] = sum(st[1] for pid in publishers if (st := _stat(pid)))
        fields = Path(f"/proc/{me}/stat").read_text().rsplit(") ", 1)[1].split()
        totals["bench itself (observer, probes)"] = (int(fields[11]) + int(fields[12])) / TICK
        return totals


# --- latency probes ------------------------------------------------------------------------------------
class PositionProbe(threading.Thread):
    """Polls positions for the probe devices' new rows (seq above the last seen: one device's rows
    land in seq order, they share a partition); latency = when first seen - fix time."""

    def __init__(self, settings: Settings, devices: list[str], seq0: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.devices = settings, devices
        self.last = dict.fromkeys(devices, seq0)
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with connect(self.settings, autocommit=True) as conn:
            while not self.stop.wait(0.2):
                rows = conn.execute(
                    "SELECT p.device_id, p.seq, p.ts, clock_timestamp() "
                    "FROM unnest(%s::text[], %s::bigint[]) AS q(device_id, seq) "
                    "JOIN positions p ON p.device_id = q.device_id AND p.seq > q.seq",
                    (self.devices, [self.last[d] for d in self.devices]),
                ).fetchall()
                for device, seq, ts, now in rows:
                    self.latencies.append((now - ts).total_seconds())
                    self.last[device] = max(self.last[device], seq)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def alert_latencies(settings: Settings, vehicles: list[str], since: datetime) -> list[float]:
    with connect(settings, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.alert_id, min(e.at) - a.raised_at FROM alerts a JOIN alert_events e USING (alert_id) "
            "WHERE a.type = 'overspeed' AND a.vehicle_id = ANY(%s) AND a.raised_at >= %s GROUP BY a.alert_id",
            (vehicles, since),
        ).fetchall()
    return [r[1].total_seconds() for r in rows]


# --- profile --------------------------------------------------------------------------------------------
def top_frames(collapsed: Path, n: int = 15) -> list[tuple[str, float, float]]:
    """(function, own %, inclusive %) from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                  if " (" in f else f for f in stack.split(";")]  # fmt: skip
        k = int(count)
        total += k
        if frames:
            own[frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    if not total:
        return []
    return [(f, 100 * c / total, 100 * incl[f] / total) for f, c in own.most_common(n)]


# --- the run ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=5000.0, help="offered fixes/s (publisher target)")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of publishing")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the sustained rates")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument(
        "--lateness", type=float, default=1.0, help="rules' lateness_seconds (reorder window)"
    )
    parser.add_argument("--overspeed-share", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bridges", type=int, default=1)
    parser.add_argument("--sinks", type=int, default=1)
    parser.add_argument(
        "--drain-timeout", type=float, default=300.0, help="seconds to wait for the lags after"
    )
    parser.add_argument(
        "--profile", default="auto", help="auto (the stage that fell behind), a service name, or none"
    )
    parser.add_argument("--profile-seconds", type=float, default=60.0)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-e2e")
    parser.add_argument(
        "--report", type=Path, default=None, help="markdown report [default: <work>/report.md]"
    )
    args = parser.parse_args()
    settings = Settings()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    report_path = args.report or work / "report.md"
    spy_bin = Path(sys.executable).with_name("py-spy")
    if args.profile != "none" and not spy_bin.exists():
        sys.exit("--profile needs py-spy in the venv: .venv/bin/pip install py-spy (or --profile none)")

    load_before = os.getloadavg()[0]
    rules, pairs = prepare_world(args.devices, args.lateness, work, log)
    vehicles = [v for _, v in pairs]
    layout = Layout(rules, None, args.bridges, args.workers, args.sinks)
    supervisor = Supervisor(
        pipeline_specs(layout), work / "logs", on_event=lambda n, t: console.print(f"{n}: {t}")
    )
    ops_since = end_offsets(settings, topics.OPS)
    observer = Observer(
        settings, {settings.worker_app_id: (topics.TELEMETRY,), settings.sink_group: (topics.TELEMETRY,)}
    )
    supervisor.start()
    try:
        wait_workers_started(settings, [f"worker-{i}" for i in range(1, args.workers + 1)], ops_since,
                             threading.Event())  # fmt: skip
        time.sleep(5)  # partitions assigned, the sink's and bridge's clients connected
        # Anything left from earlier runs is drained first, so lags start at zero.
        while (s := observer.sample(with_db=False)) and any(
            s.lag(g, t) for g, ts in observer.groups.items() for t in ts
        ):
            time.sleep(2)

        roots = stack_roots(settings.stack_dir)
        service_pids = {name: {pid} for name, pid in supervisor.pids().items() if pid}
        started_at = datetime.now(UTC)
        seq0 = int(time.time() * 1000)  # seqs never repeat across runs of the same devices
        probe = PositionProbe(settings, [d for d, _ in pairs[:PROBES]], seq0)
        probe.start()
        meter = CpuMeter({**service_pids, **roots})
        cpu0, cpu_last, cpu_span = meter.read(), {}, 0.0
        s0 = observer.sample(with_db=False)
        start_offsets = (s0.ends[topics.TELEMETRY], s0.committed[(settings.worker_app_id, topics.TELEMETRY)],
                         s0.committed[(settings.sink_group, topics.TELEMETRY)])  # fmt: skip
        counters = {"acked": 0}

        def progress(_sent: int, acked: int, _failed: int) -> None:
            counters["acked"] = acked

        stop_at = time.monotonic() + args.duration
        result: dict[str, _mqtt.PublishStats] = {}

        def publish() -> None:
            result["stats"] = _mqtt.publish_parallel(
                settings,
                lambda shard, n: live_fixes(pairs, shard, n, seq0, args.overspeed_share, stop_at),
                {d: "" for d, _ in pairs},
                processes=args.publishers,
                rate=args.rate,
                admin_connections=2,
                on_progress=progress,
            )

        def stats_acked() -> int:
            return result["stats"].acked if "stats" in result else counters["acked"]

        publisher = threading.Thread(target=publish, daemon=True)
        t0 = time.monotonic()
        publisher.start()
        timeline: list[tuple[float, int, int, int, int, int, int]] = []  # t, acked, kafka, worker, sink, lags
        spy: subprocess.Popen[bytes] | None = None
        profiled = ""
        profile_file = work / f"profile-{report_path.stem}.collapsed"
        while publisher.is_alive():
            time.sleep(2)
            s = observer.sample(with_db=False)
            w_lag, s_lag = (
                s.lag(settings.worker_app_id, topics.TELEMETRY),
                s.lag(settings.sink_group, topics.TELEMETRY),
            )
            row = (time.monotonic() - t0, counters["acked"], s.ends[topics.TELEMETRY],
                   s.committed[(settings.worker_app_id, topics.TELEMETRY)],
                   s.committed[(settings.sink_group, topics.TELEMETRY)], w_lag, s_lag)  # fmt: skip
            timeline.append(row)
            if publisher.is_alive():  # the publisher processes' CPU is readable only while they run
                cpu_last, cpu_span = meter.read(), row[0]
            console.print(f"{row[0]:6.0f} s  acked {row[1]:>10,}  kafka {row[2]:>10,}  "
                          f"worker lag {w_lag:>9,}  "
                          f"sink lag {s_lag:>9,}")  # fmt: skip
            if spy is None and args.profile != "none" and row[0] >= min(args.warmup + 30, args.duration / 2):
                profiled = args.profile if args.profile != "auto" else limiting_stage(timeline, settings)
                pid = supervisor.pids().get(profiled)
                if pid:
                    spy = subprocess.Popen(
                        [str(spy_bin), "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                         "--duration", f"{args.profile_seconds:g}", "--nonblocking", "-o", str(profile_file)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                    )  # fmt: skip
        published_s = time.monotonic() - t0
        finished_at = datetime.now(UTC)
        drain_began = time.monotonic()
        drained: dict[str, float | None] = {settings.sink_group: None, settings.worker_app_id: None}
        while None in drained.values() and time.monotonic() - drain_began < args.drain_timeout:
            s = observer.sample(with_db=False)
            for group in drained:
                if drained[group] is None and s.lag(group, topics.TELEMETRY) == 0:
                    drained[group] = time.monotonic() - drain_began
            time.sleep(1)
        final = observer.sample(with_db=False)
        unproduced = max(0, stats_acked() - (final.ends[topics.TELEMETRY] - start_offsets[0]))
        time.sleep(3)  # the last alert batches
        probe.stop.set()
        probe.join(10)
        if spy is not None:
            spy.wait(args.profile_seconds + 60)
        stats = result["stats"]
        with connect(settings, autocommit=True) as conn:
            counted: tuple[int, int] | None = conn.execute(
                "SELECT count(*), count(DISTINCT (device_id, seq)) FROM positions "
                "WHERE vehicle_id = ANY(%s) AND ts >= %s",
                (vehicles, started_at),
            ).fetchone()
        stored, distinct = counted or (0, 0)
        alert_lat = alert_latencies(settings, vehicles, started_at)
    finally:
        supervisor.stop()
        observer.close()

    # --- report -------------------------------------------------------------------------------------
    steady = [r for r in timeline if r[0] >= args.warmup]

    def rate_of(col: int) -> float:
        if len(steady) < 2:
            return float("nan")
        return (steady[-1][col] - steady[0][col]) / (steady[-1][0] - steady[0][0])

    rates = {"publisher → Mosquitto (acked, baseline)": rate_of(1), "bridge → Kafka": rate_of(2),
             "worker (committed)": rate_of(3), "sink → positions (committed)": rate_of(4)}  # fmt: skip
    baseline = rates["publisher → Mosquitto (acked, baseline)"]
    acked_at_span = next((r[1] for r in timeline if r[0] >= cpu_span), stats.acked)
    cpu = {k: cpu_last[k] - cpu0.get(k, 0.0) for k in cpu_last}
    at_span = next((r for r in timeline if r[0] >= cpu_span), timeline[-1])
    # What each stage handled in that window (the others: the fixes acknowledged to the publisher).
    handled = {"bridge-1": at_span[2] - start_offsets[0], "worker-1": at_span[3] - start_offsets[1],
               "sink-1": at_span[4] - start_offsets[2]}  # fmt: skip
    pos = probe.latencies
    lines = [
        f"# End-to-end benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`bench/bench_e2e.py --rate {args.rate:g} --duration {args.duration:g} --devices {args.devices} "
        f"--publishers {args.publishers} --workers {args.workers} --bridges {args.bridges} "
        f"--sinks {args.sinks} "
        f"--lateness {args.lateness:g}`; {os.cpu_count()} cores; 1-min load average {load_before:.1f} before "
        f"the run, {os.getloadavg()[0]:.1f} after it (the machine is shared).",
        "",
        "| stage | fixes/s (steady, after warm-up) | ratio to the publisher |",
        "|---|---|---|",
        *(f"| {k} | {v:,.0f} | {v / baseline:.2f} |" for k, v in rates.items()),
        "",
        f"Published {stats.acked:,} acknowledged fixes in {published_s:.0f} s ({stats.failed} failed); "
        f"offered rate {args.rate:,.0f}/s. After publishing stopped: "
        + "; ".join(
            f"{group} caught up in {t:.0f} s"
            if t is not None
            else f"{group} still {final.lag(group, topics.TELEMETRY):,} records behind after "
            f"{args.drain_timeout:g} s"
            for group, t in drained.items()
        )
        + ".",
        "",
        f"**Sent vs stored**: {stats.acked:,} acknowledged by Mosquitto → {distinct:,} distinct "
        f"positions rows ({stored:,} rows); "
        + (
            f"lost: {stats.acked - distinct:,}."
            if not unproduced and not final.lag(settings.sink_group, topics.TELEMETRY)
            else f"not stored yet: {unproduced:,} still in the bridge's MQTT queue and "
            f"{final.lag(settings.sink_group, topics.TELEMETRY):,} on Kafka ahead of the sink (both durable: "
            "a later run drains them; count again with the query below)."
        ),
        "",
        f"Count: `SELECT count(DISTINCT (device_id, seq)) FROM positions WHERE device_id LIKE '{NAMESPACE}%' "
        f"AND ts >= '{started_at.isoformat()}' AND ts < '{finished_at.isoformat()}'`.",
        "",
        "| latency | n | p50 | p99 | max |",
        "|---|---|---|---|---|",
        f"| fix time → positions row (polled every 0.2 s) | {len(pos):,} | {percentile(pos, 0.5):.2f} s | "
        f"{percentile(pos, 0.99):.2f} s | {max(pos, default=float('nan')):.2f} s |",
        f"| violating fix → alert row (overspeed, lateness {args.lateness:g} s) | {len(alert_lat):,} | "
        f"{percentile(alert_lat, 0.5):.2f} s | {percentile(alert_lat, 0.99):.2f} s | "
        f"{max(alert_lat, default=float('nan')):.2f} s |",
        "",
        f"| CPU over the first {cpu_span:.0f} s of publishing | CPU-s | cores | fixes it handled "
        "| µs per fix |",
        "|---|---|---|---|---|",
        *(
            f"| {k} | {v:,.1f} | {v / cpu_span:.2f} | {handled.get(k, acked_at_span):,} | "
            f"{1e6 * v / max(handled.get(k, acked_at_span), 1):,.0f} |"
            for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
        ),
        "",
        "| t (s) | acked | on Kafka | worker committed | sink committed | worker lag | sink lag |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r[0]:.0f} | {r[1]:,} | {r[2]:,} | {r[3]:,} | {r[4]:,} | {r[5]:,} | {r[6]:,} |"
            for r in timeline[:: max(1, len(timeline) // 20)]
        ),
    ]
    if profiled and profile_file.exists():
        title = f"Profile of `{profiled}` (py-spy, {args.profile_seconds:g} s, all threads, own samples):"
        lines += ["", title, "",
                  "| function | own % | inclusive % |", "|---|---|---|",
                  *(f"| `{f}` | {own:.1f} | {inc:.1f} |" for f, own, inc in top_frames(profile_file)),
                  "", f"Collapsed stacks: `{profile_file}`."]  # fmt: skip
    report_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    console.print("\n".join(lines))
    console.print(f"\nreport: {report_path}")


def limiting_stage(timeline: list[tuple[float, int, int, int, int, int, int]], settings: Settings) -> str:
    """The service whose input backlog grows fastest over the last samples (MQTT queue for the bridge)."""
    first, last = timeline[max(0, len(timeline) - 10)], timeline[-1]
    growth = {
        "bridge-1": (last[1] - last[2]) - (first[1] - first[2]),  # acked by Mosquitto, not yet on Kafka
        "worker-1": last[5] - first[5],
        "sink-1": last[6] - first[6],
    }
    return max(growth, key=lambda k: growth[k])


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
