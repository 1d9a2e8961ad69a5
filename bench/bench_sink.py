"""Sink throughput (Kafka -> batched COPY + merge -> positions) vs `psql \\copy` of the same rows.

Both sides write N fixes into the same `positions` hypertable (same indexes, same chunks) in the
same run: the sink consumes them from a scratch topic (decode + contract check, binary COPY into
staging, INSERT ... ON CONFLICT with the registry join, offsets committed after each batch);
the baseline is `psql \\copy` of a CSV of the same rows (different device ids, so neither side
conflicts with the other), with no validation and no delivery guarantee. For scale, a bare
kafka-python consume loop over the same topic is timed too.

    .venv/bin/python bench/bench_sink.py [--fixes 200000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fleetwatch.kafka_io import create_topic, delete_topic, make_consumer, make_producer
from fleetwatch.records import Fix
from fleetwatch.settings import Settings
from fleetwatch.stack import ensure_up
from sink.registry import make_sinks
from sink.runner import SinkRunner
from store.db import connect
from store.migrate import migrate
from store.roles import ensure_service_logins

console = Console()
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


def time_sink(settings: Settings, topic: str, group: str, dlq: str) -> tuple[float, int]:
    """(records/s from first record to last commit, rows stored) of the sink over the topic."""
    runner = SinkRunner(settings, make_sinks(["positions"], {"positions": topic}), group=group, dlq_topic=dlq,
                        stop=threading.Event())  # fmt: skip
    stats = runner.run(idle_exit_s=3.0, progress_every_s=0)
    return stats.records_per_s, stats.changed["positions"]


def time_bare_consume(settings: Settings, topic: str, n: int) -> float:
    consumer = make_consumer(settings, group_id=None, max_poll_records=5000)
    from kafka import TopicPartition

    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(parts)
    consumer.seek_to_beginning()
    seen = 0
    started: float | None = None
    while seen < n:
        batch = consumer.poll(timeout_ms=1000)
        if batch and started is None:
            started = time.monotonic()
        seen += sum(len(r) for r in batch.values())
    took = time.monotonic() - (started or time.monotonic())
    consumer.close()
    return n / took


def count(settings: Settings, prefix: str) -> int:
    with connect(settings) as conn:
        sql = "SELECT count(*) FROM positions WHERE device_id LIKE %s"
        row = conn.execute(sql, (prefix + "-%",)).fetchone()
    return int(str(row[0])) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fixes", type=int, default=200_000)
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5000, help="sink batch size (records)")
    args = parser.parse_args()
    settings = Settings(sink_batch_records=args.batch)
    ensure_up(Settings())
    with connect(settings) as conn:
        migrate(conn)
        ensure_service_logins(conn, settings)
    tag = uuid.uuid4().hex[:8]
    topic, dlq = f"bench-sink-{tag}", f"bench-sink-dlq-{tag}"
    create_topic(settings, topic, 6)
    create_topic(settings, dlq, 1)
    sink_fixes = make_fixes(f"bs{tag}", args.fixes, args.vehicles)
    copy_fixes = make_fixes(f"bc{tag}", args.fixes, args.vehicles)
    n = len(sink_fixes)
    try:
        with console.status(f"producing {n:,} fixes into {topic}"):
            produce(settings, topic, sink_fixes)
        with tempfile.TemporaryDirectory() as tmp, console.status("psql \\copy"):
            os.chmod(tmp, 0o755)
            copy_s = time_psql_copy(settings, copy_fixes, Path(tmp))
        with console.status("fleetwatch sink"):
            sink_rate, stored = time_sink(settings, topic, f"bench-sink-{tag}", dlq)
        with console.status("bare kafka-python consume"):
            consume_rate = time_bare_consume(settings, topic, n)
        stored_copy = count(settings, f"bc{tag}")
    finally:
        delete_topic(settings, topic)
        delete_topic(settings, dlq)
    assert stored == n and stored_copy == n, (stored, stored_copy, n)
    copy_rate = n / copy_s
    table = Table(title=f"positions: {n:,} fixes, sink batch {args.batch:,}")
    for column in ("path", "rows/s", "vs psql \\copy"):
        table.add_column(column, justify="right" if column != "path" else "left")
    table.add_row("psql \\copy (CSV, no validation, baseline)", f"{copy_rate:,.0f}", "1.00")
    table.add_row("fleetwatch sink (Kafka -> COPY staging -> merge)", f"{sink_rate:,.0f}",
                  f"{sink_rate / copy_rate:.2f}")  # fmt: skip
    table.add_row("[dim]bare kafka-python consume (for scale)[/]", f"{consume_rate:,.0f}",
                  f"{consume_rate / copy_rate:.2f}")  # fmt: skip
    console.print(table)
    console.print(f"ratio sink / psql \\copy = [bold]{sink_rate / copy_rate:.2f}[/] (target >= 0.5)")


if __name__ == "__main__":
    main()
