"""Every dashboard panel query on >= 10 M positions, as the read-only dashboards login.

Load (``--load``; against a database of its own, e.g. ``FLEETWATCH_PG_DATABASE=fleetwatch_bench``
after ``fleetwatch db migrate``): the simulator's fleet (``--vehicles``, default 5,000) over the
last ``--days`` (7) days, day by day, one fix per 10 s while moving and a heartbeat per 600 s parked
(so 5,000 x 7 days is ~12 M fixes), produced to a Kafka topic with ``kcat`` (the Python producer
would take longer than the rest together) and stored by the sink; detection over the first
``--detect-vehicles`` (1,000) vehicles' last working day gives trips and alerts (detection over all
would take longer than the whole load on 2 cores); vehicle_state gets a row for each of
``--map-vehicles`` (31,000) registered vehicles (newest stored fix, else parked at its depot);
``fleetwatch db maintain``'s rollup rebuilds kpi_daily.

Measure: each dashboard's variable, panel and annotation queries, interpolated as Grafana would,
``--repeat`` times; the median of each. Baseline in the same run: a full ``count(*)`` of positions
(what a panel that scanned the hypertable would at least cost). Prints the slowest panel, the
live map's time, and each against its target (panels <= 1 s, live map <= 200 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dashboards.build import load_committed
from dashboards.check import QueryResult, connect_as, run_dashboard
from dashboards.demo import _records, detect, produce, register_world
from fleetwatch.kafka_auth import kcat_args
from fleetwatch.kafka_io import create_topic, delete_topic
from fleetwatch.records import VehicleStatus, VehicleStatusKind
from fleetwatch.settings import Settings
from simulator._dataset import build_fleet
from simulator._motion import MotionConfig
from simulator._scenarios import is_workday
from simulator._world import build_world
from sink.registry import make_sinks
from sink.runner import SinkRunner, SinkStats
from store.db import connect
from store.rollups import refresh_kpi_daily

# Benchmarks drive the services over scratch topics that their own Kafka ACLs rightly do not
# cover: every client acts as the tooling principal, as in the tests (tests/conftest.py).
os.environ.setdefault("FLEETWATCH_KAFKA_AS", "admin")

console = Console(width=160)
SEED = 11
SHANGHAI = ZoneInfo("Asia/Shanghai")


MOTION = MotionConfig(10, 600)


def _produce_day(args: tuple[Settings, str, int, datetime, int]) -> int:
    """One simulated day of the fleet into the positions topic (runs in a worker process)."""
    settings, topic, vehicles, day_start, day = args
    ds = build_fleet(vehicles, SEED, day_start, timedelta(days=1), 0.05, MOTION, seq_base=day * 1_000_000)
    argv = ["kcat", *kcat_args(settings, "admin"), "-P", "-t", topic, "-K", "\t", "-z", "lz4"]
    kcat = subprocess.Popen(argv, stdin=subprocess.PIPE)
    assert kcat.stdin is not None
    count = 0
    for vehicle, m in ds.messages():
        kcat.stdin.write(vehicle.vehicle_id.encode() + b"\t" + m.payload + b"\n")
        count += 1
    kcat.stdin.close()
    if kcat.wait() != 0:
        raise RuntimeError("kcat failed")
    return count


def _detect_day(args: tuple[Settings, dict[str, str], int, datetime, int]) -> str:
    """Detection over a sample of one day; trips and alerts to their topics (a worker process)."""
    settings, topics, vehicles, day_start, day = args
    sample = build_fleet(vehicles, SEED, day_start, timedelta(days=1), 0.05, MOTION, seq_base=day * 1_000_000)
    started = time.monotonic()
    result = detect(sample)
    for table in ("trips", "alerts"):
        produce(settings, topics[table], _records(sample, result, [], table))
    return (
        f"detection over {vehicles:,} vehicles on {day_start:%Y-%m-%d %H:%M}: {len(result.trips):,} trips, "
        f"{len(result.alerts):,} alerts in {time.monotonic() - started:.0f} s"
    )


def _sink_until(settings: Settings, overrides: dict[str, str], group: str, dlq: str, done: Any) -> SinkStats:
    """The sink in a thread from the start; stops once ``done()`` and it has been idle 10 s."""
    stop = threading.Event()
    runner = SinkRunner(
        settings, make_sinks(list(overrides), overrides), group=group, dlq_topic=dlq, stop=stop
    )
    thread = threading.Thread(target=runner.run, kwargs={"progress_every_s": 0}, daemon=True)
    thread.start()
    last, idle_since = -1, time.monotonic()
    while thread.is_alive():
        time.sleep(5)
        if runner.stats.records != last:
            last, idle_since = runner.stats.records, time.monotonic()
        elif done() and time.monotonic() - idle_since > 10:
            stop.set()
    thread.join()
    return runner.stats


def _map_states(settings: Settings, world: Any, now: datetime) -> list[VehicleStatus]:
    """A vehicle_state record for every vehicle of the (31k) world: its newest stored fix if it has
    one (the bench fleet), else parked at its unit's depot. (Simulating 31,000 vehicles even for
    minutes costs a simulated day each: the simulator clips whole days.)"""
    with connect(settings) as conn:
        newest = {
            str(v): (ts, lat, lon, speed, ignition)
            for v, ts, lat, lon, speed, ignition in conn.execute(
                "SELECT DISTINCT ON (vehicle_id) vehicle_id, ts, lat, lon, speed_kmh, ignition "
                "FROM positions WHERE ts > %s::timestamptz - interval '1 day' ORDER BY vehicle_id, ts DESC",
                (now,),
            ).fetchall()
        }
    rows = []
    for v in world.vehicles:
        parked = (now, v.unit.depot_lat, v.unit.depot_lon, 0.0, False)
        ts, lat, lon, speed, ignition = newest.get(v.vehicle_id, parked)
        moving = bool(ignition) and speed >= 3
        status = VehicleStatusKind.MOVING if moving else VehicleStatusKind.PARKED
        rows.append(
            VehicleStatus(v.vehicle_id, v.org, ts, lat, lon, float(speed), bool(ignition), status, (), now)
        )
    return rows


def load(settings: Settings, vehicles: int, days: int, map_vehicles: int, detect_vehicles: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days)
    nanjing = (map_vehicles * 3 + 3) // 4
    register_world(settings, build_world(SEED, nanjing, map_vehicles - nanjing))
    tag = f"bench{int(time.time())}"
    topics = {t: f"fw-bench-{tag}-{t}" for t in ("positions", "trips", "alerts", "vehicle_state", "dlq")}
    for table, topic in topics.items():
        create_topic(settings, topic, 6 if table == "positions" else 3)
    # A day window starts at ``start``'s time of day: judge it by its middle, in the platform's zone.
    middles = [(start + timedelta(days=d, hours=12)).astimezone(SHANGHAI).date() for d in range(days)]
    workdays = [d for d, day in enumerate(middles) if is_workday(day)]
    detect_day = workdays[-1] if workdays else days - 1
    t0 = time.monotonic()
    finished = threading.Event()
    try:
        # Two simulator processes (the simulator is the slow part) while the sink stores what is there.
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            jobs = [
                (settings, topics["positions"], vehicles, start + timedelta(days=d), d) for d in range(days)
            ]
            counts = pool.map_async(_produce_day, jobs)
            detection = pool.apply_async(
                _detect_day,
                ((settings, topics, detect_vehicles, start + timedelta(days=detect_day), detect_day),),
            )

            def done() -> bool:
                if counts.ready() and detection.ready() and not finished.is_set():
                    finished.set()
                    console.print(f"produced {sum(counts.get()):,} fixes in {time.monotonic() - t0:.0f} s")
                    console.print(detection.get())
                return finished.is_set()

            overrides = {t: topics[t] for t in ("positions", "trips", "alerts")}
            stats = _sink_until(settings, overrides, f"fw-bench-{tag}", topics["dlq"], done)
        console.print(
            f"sink: {stats.records:,} records, {stats.records_per_s:,.0f} records/s while busy; "
            f"rows changed {dict(stats.changed)}; load took {time.monotonic() - t0:.0f} s"
        )
        states = _map_states(settings, build_world(SEED, nanjing, map_vehicles - nanjing), now)
        produce(
            settings,
            topics["vehicle_state"],
            ((r.vehicle_id.encode(), r.to_json(), None) for r in states),
        )
        stats = _sink_until(
            settings,
            {"vehicle_state": topics["vehicle_state"]},
            f"fw-bench-{tag}-vs",
            topics["dlq"],
            lambda: True,
        )
        console.print(f"vehicle_state: {stats.changed['vehicle_state']:,} rows via the sink")
    finally:
        for topic in topics.values():
            delete_topic(settings, topic)
    with connect(settings) as conn:
        started = time.monotonic()
        rollup = refresh_kpi_daily(conn, (start - timedelta(days=1)).date(), now.date())
        console.print(f"kpi_daily: {rollup.rows:,} rows in {time.monotonic() - started:.1f} s")
        conn.execute("ANALYZE")


def measure(settings: Settings, repeat: int) -> None:
    conn = connect_as(settings, settings.pg_dashboards_user, settings.secret("pg_dashboards_password"))
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM positions), (SELECT count(DISTINCT vehicle_id) FROM vehicle_state), "
        "(SELECT max(ts) FROM positions), (SELECT count(*) FROM alerts), (SELECT count(*) FROM trips)"
    ).fetchone()
    assert counts is not None
    positions, map_vehicles, newest, alerts, trips = counts
    started = time.perf_counter()
    conn.execute("SELECT count(*) FROM positions").fetchone()
    baseline = time.perf_counter() - started
    console.print(
        f"database: {positions:,} positions, {map_vehicles:,} vehicles in vehicle_state, {trips:,} trips, "
        f"{alerts:,} alerts; baseline full count(*) of positions {baseline * 1000:.0f} ms"
    )
    now = newest + timedelta(seconds=1) if newest else datetime.now(UTC)
    row = conn.execute("SELECT vehicle_id FROM trips ORDER BY start_at DESC LIMIT 1").fetchone()
    vehicle = str(row[0]) if row else ""
    ranges = {
        "fw-live-map": timedelta(minutes=15),
        "fw-alerts-sla": timedelta(days=7),
        "fw-track-replay": timedelta(days=1),
        "fw-fleet-kpis": timedelta(days=30),
        "fw-pipeline": timedelta(minutes=15),
    }
    timings: dict[tuple[str, str], list[float]] = {}
    last: dict[tuple[str, str], QueryResult] = {}
    for _ in range(repeat):
        for board in load_committed().values():
            overrides = {"vehicle": [vehicle]} if board["uid"] == "fw-track-replay" else {}
            for result in run_dashboard(conn, board, now - ranges[board["uid"]], now, overrides):
                timings.setdefault((board["uid"], result.where), []).append(result.seconds)
                last[(board["uid"], result.where)] = result
    table = Table(title=f"panel queries as {settings.pg_dashboards_user}: median of {repeat}")
    for column in ("dashboard", "query", "rows", "median ms", "vs baseline", "target ms", "ok"):
        table.add_column(column, justify="left" if column in ("dashboard", "query") else "right")
    rows = sorted(((statistics.median(v), k) for k, v in timings.items()), reverse=True)
    for seconds, key in rows:
        target = 0.2 if key[0] == "fw-live-map" and not key[1].startswith("variable") else 1.0
        table.add_row(
            key[0],
            escape(key[1]),
            f"{last[key].rows:,}",
            f"{seconds * 1000:.1f}",
            f"{seconds / baseline:.3f}",
            f"{target * 1000:.0f}",
            "yes" if seconds <= target else "[red]NO[/]",
        )
    console.print(table)
    slowest_s, slowest = rows[0]
    live = max(s for s, k in rows if k[0] == "fw-live-map")
    console.print(
        f"slowest: {slowest[0]} / {slowest[1]} {slowest_s * 1000:.0f} ms (target 1000 ms); "
        f"live map slowest query {live * 1000:.0f} ms over {map_vehicles:,} vehicles (target 200 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--load", action="store_true", help="load the fleet first (minutes)")
    parser.add_argument("--vehicles", type=int, default=5000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--map-vehicles", type=int, default=31000)
    parser.add_argument("--detect-vehicles", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    if args.load:
        load(settings, args.vehicles, args.days, args.map_vehicles, args.detect_vehicles)
    measure(settings, args.repeat)


if __name__ == "__main__":
    main()
