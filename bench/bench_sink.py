"""Sink throughput (Kafka -> typed rows -> binary COPY into positions) vs `psql \\copy` of the same rows.

Both sides write N fixes into the same `positions` hypertable (same indexes, same chunks) in the
same run: the sink consumes them from a scratch topic (aiokafka; each fix decoded with orjson and
type-checked; the org from its cache of the registry; binary COPY straight into positions when
its login bypasses row-level security, as the stack's does, else staging + INSERT; offsets
committed after each batch's commit); the baseline is `psql \\copy` of a CSV of the same rows
(different device ids, so neither side conflicts with the other), with no validation and no
delivery guarantee. For scale, the sink's own consumer (aiokafka) draining the same topic with
nothing else to do is timed too.

On a shared machine the wall-clock ratio swings with everyone else's load, so each side's
PostgreSQL CPU time is measured as well (the stack's cluster serves only this checkout), and the
sink process's own CPU (decoding, the driver, the consumer): the sink runs on two cores, the
server's and its own, and its rate is bounded by the busier of the two.

    .venv/bin/python bench/bench_sink.py [--fixes 100000] [--rounds 3] [--batch 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from fleetwatch.kafka_io import create_topic, delete_topic, make_producer
from fleetwatch.records import Fix
from fleetwatch.settings import Settings
from fleetwatch.stack import ensure_up
from sink.consumer import BlockingConsumer
from sink.registry import make_sinks
from sink.runner import SinkRunner
from store.db import connect
from store.migrate import migrate
from store.roles import ensure_service_logins

# Benchmarks drive the services over scratch topics that their own Kafka ACLs rightly do not
# cover: every client acts as the tooling principal, as in the tests (tests/conftest.py).
os.environ.setdefault("FLEETWATCH_KAFKA_AS", "admin")

T = TypeVar("T")
console = Console()
TICK = os.sysconf("SC_CLK_TCK")
COLUMNS = ("ts", "vehicle_id", "device_id", "org", "seq", "lat", "lon", "speed_kmh", "heading", "ignition",
           "received_at")  # fmt: skip


def make_fixes(prefix: str, n: int, vehicles: int) -> list[Fix]:
    start = datetime.now(UTC) - timedelta(days=2)
    per = n // vehicles
    return [
        Fix(device_id=f"{prefix}-{v}", vehicle_id=f"B{prefix[-5:]}{v:03d}",
            ts=start + timedelta(seconds=10 * i), lat=32.0 + i * 1e-6, lon=118.7 + v * 1e-4, speed_kmh=40.0,
            heading=90.0, acc=True, seq=i)
        for v in range(vehicles) for i in range(per)
    ]  # fmt: skip


def produce(settings: Settings, topic: str, fixes: list[Fix]) -> None:
    producer = make_producer(settings, client_id="bench-sink")
    for fix in fixes:
        producer.send(topic, key=fix.key, value=fix.to_json())
    producer.flush(120)
    producer.close(10)


def server_cpu_s(settings: Settings) -> float:
    """CPU seconds used so far by the stack's PostgreSQL: the postmaster, its exited children
    (backends end with their connection) and its live ones."""
    pid = (settings.stack_dir.resolve() / "pg" / "data" / "postmaster.pid").read_text().split()[0]

    def fields(p: str) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    ticks = sum(int(x) for x in fields(pid)[11:15])  # utime, stime, cutime, cstime
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        # One that exits meanwhile is counted in cutime once reaped.
        with contextlib.suppress(FileNotFoundError):
            ticks += sum(int(x) for x in fields(child)[11:13])
    return ticks / TICK


def server_cpu_of(settings: Settings, run: Callable[[], T]) -> tuple[T, float]:
    """``run()``'s result and the server CPU seconds it took (after its backend has exited)."""
    before = server_cpu_s(settings)
    result = run()
    time.sleep(0.5)  # let the postmaster reap the finished backend
    return result, server_cpu_s(settings) - before


def time_psql_copy(settings: Settings, fixes: list[Fix], workdir: Path) -> float:
    """Seconds for `psql \\copy` of the rows (as CSV) into positions."""
    path = workdir / "rows.csv"
    now = datetime.now(UTC).isoformat()
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        for f in fixes:
            writer.writerow((f.ts.isoformat(), f.vehicle_id, f.device_id, "unregistered", f.seq, f.lat, f.lon,
                             f.speed_kmh, f.heading, "t" if f.acc else "f", now))  # fmt: skip
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", settings.pg_host, "-p", str(settings.pg_port),
            "-U", settings.pg_user, "-d", settings.pg_database,
            "-c", f"\\copy positions ({', '.join(COLUMNS)}) FROM '{path}' WITH (FORMAT csv)"]  # fmt: skip
    env = {**os.environ, "PGPASSWORD": settings.secret("pg_password")}
    started = time.monotonic()
    subprocess.run(argv, env=env, check=True)
    return time.monotonic() - started


def time_sink(settings: Settings, topic: str, group: str, dlq: str) -> tuple[float, int, float]:
    """(records/s from first record to last commit, rows stored, this process's CPU seconds) of the
    sink over the topic."""
    runner = SinkRunner(settings, make_sinks(["positions"], {"positions": topic}), group=group, dlq_topic=dlq,
                        stop=threading.Event())  # fmt: skip
    before = time.process_time()
    stats = runner.run(idle_exit_s=3.0, progress_every_s=0)
    return stats.records_per_s, stats.changed["positions"], time.process_time() - before


def time_bare_consume(settings: Settings, topic: str, n: int, group: str) -> float:
    """The sink's own consumer (aiokafka) draining the topic with nothing else to do: its ceiling."""
    consumer = BlockingConsumer(settings, group_id=group, topics=(topic,), client_id="bench-sink-bare",
                                max_poll_interval_ms=300_000)  # fmt: skip
    seen = 0
    started: float | None = None
    try:
        while seen < n:
            batch = consumer.poll(timeout_ms=1000, max_records=5000)
            if batch and started is None:
                started = time.monotonic()
            seen += sum(len(r) for r in batch.values())
    finally:
        consumer.close()
    return n / (time.monotonic() - (started or time.monotonic()))


def count(settings: Settings, prefix: str) -> int:
    with connect(settings) as conn:
        sql = "SELECT count(*) FROM positions WHERE device_id LIKE %s"
        row = conn.execute(sql, (prefix + "-%",)).fetchone()
    return int(str(row[0])) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixes", type=int, default=100_000)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20_000, help="sink batch size (records)")
    parser.add_argument("--rounds", type=int, default=3, help="baseline/sink pairs (median ratio)")
    args = parser.parse_args()
    settings = Settings(sink_batch_records=args.batch)
    ensure_up(Settings())
    with connect(settings) as conn:
        migrate(conn)
        ensure_service_logins(conn, settings)
    with connect(settings, "sink") as conn:
        row = conn.execute("SELECT row_security_active('positions')").fetchone()
    path = "staged INSERT (row-level security applies)" if row and row[0] else "COPY into positions"
    load_at_start = os.getloadavg()[0]
    tag = uuid.uuid4().hex[:8]
    dlq = f"bench-sink-dlq-{tag}"
    create_topic(settings, dlq, 1)
    rounds: list[tuple[float, float, float, float, float, float]] = []
    try:
        # Alternate baseline and sink a few times: the machine is shared, and a ratio of two
        # runs seconds apart is only as good as the quietest moment each one happened to get.
        for round_ in range(args.rounds):
            topic = f"bench-sink-{tag}-{round_}"
            create_topic(settings, topic, 6)
            sink_fixes = make_fixes(f"bs{tag}{round_}", args.fixes, args.vehicles)
            copy_fixes = make_fixes(f"bc{tag}{round_}", args.fixes, args.vehicles)
            n = len(sink_fixes)
            try:
                with console.status(f"round {round_ + 1}: producing {n:,} fixes into {topic}"):
                    produce(settings, topic, sink_fixes)
                with tempfile.TemporaryDirectory() as tmp, console.status(f"round {round_ + 1}: psql \\copy"):
                    os.chmod(tmp, 0o755)
                    copy_s, copy_cpu = server_cpu_of(
                        settings, lambda: time_psql_copy(settings, copy_fixes, Path(tmp))  # noqa: B023
                    )
                with console.status(f"round {round_ + 1}: fleetwatch sink"):
                    (sink_rate, stored, sink_py_cpu), sink_cpu = server_cpu_of(
                        settings, lambda: time_sink(settings, topic, f"bench-sink-{tag}-{round_}", dlq)  # noqa: B023
                    )
                with console.status(f"round {round_ + 1}: bare consume"):
                    consume_rate = time_bare_consume(settings, topic, n, f"bench-sink-bare-{tag}-{round_}")
            finally:
                delete_topic(settings, topic)
            stored_copy = count(settings, f"bc{tag}{round_}")
            assert stored == n and stored_copy == n, (stored, stored_copy, n)
            rounds.append((n / copy_s, sink_rate, consume_rate, copy_cpu, sink_cpu, sink_py_cpu))
    finally:
        delete_topic(settings, dlq)
    table = Table(title=f"positions: {args.fixes:,} fixes per round, sink batch {args.batch:,}")
    for column in ("round", "psql \\copy rows/s", "sink rows/s", "ratio", "bare consume/s",
                   "server CPU s: \\copy / sink", "CPU ratio", "sink process CPU s"):  # fmt: skip
        table.add_column(column, justify="right")
    for i, (copy_rate, sink_rate, consume_rate, copy_cpu, sink_cpu, sink_py_cpu) in enumerate(rounds, 1):
        table.add_row(str(i), f"{copy_rate:,.0f}", f"{sink_rate:,.0f}", f"{sink_rate / copy_rate:.2f}",
                      f"{consume_rate:,.0f}", f"{copy_cpu:.2f} / {sink_cpu:.2f}",
                      f"{copy_cpu / max(sink_cpu, 1e-9):.2f}", f"{sink_py_cpu:.2f}")  # fmt: skip
    console.print(table)
    ratios = sorted(r[1] / r[0] for r in rounds)
    cpu_ratios = sorted(r[3] / max(r[4], 1e-9) for r in rounds)
    median, cpu_median = ratios[len(ratios) // 2], cpu_ratios[len(cpu_ratios) // 2]
    console.print(f"median ratio sink / psql \\copy = [bold]{median:.2f}[/] (target >= 0.5); "
                  f"range {ratios[0]:.2f}-{ratios[-1]:.2f}; server CPU ratio {cpu_median:.2f}; "
                  f"load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
                  f"the sink wrote by {path}")


if __name__ == "__main__":
    main()
