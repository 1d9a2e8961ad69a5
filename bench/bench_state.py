"""Benchmark: per-vehicle state size over a fleet day fed in time order, and `detect`'s peak RSS.

    .venv/bin/python bench/bench_state.py [WORLD_DIR] [--skip-rss]

WORLD_DIR holds rules.yaml, fixes.jsonl and orders.jsonl of a fleet day (without it, `fleetwatch
simulate fleet --vehicles 1000 --duration 1d` is generated into a temporary directory; its
fixes.jsonl is in time order). Every 30 min of event time it measures, over all vehicles:

* persisted state: `len(dump_state(state))`, what a stream worker writes per fix (median, max);
* replay history: bytes of packed rows per retained fix, and checkpoints per retained fix.
  Baseline in the same run: the same retained fixes as pickled `Fix` objects (what the history
  held before it was packed), so the ratio says what packing saves;

then runs `fleetwatch detect` over the whole file in a child process and reports its peak RSS,
against a child that only parses the same file (the floor any consumer pays).
"""

from __future__ import annotations

import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fleetwatch.records import ContractError, parse_fix, parse_order
from geofence import load_rules
from streams.core import Context, OrderBook, VehicleState, dump_state, process
from streams.core.packed import unpack

_NOW = datetime(9999, 1, 1).astimezone()
EVERY = timedelta(minutes=30)
console = Console()


@dataclass
class Sample:
    at: datetime
    fixes_since: int  # fixes in the preceding interval: how busy it was
    vehicles: int
    persisted_median: float
    persisted_max: int
    rows_per_fix: float
    checkpoints_per_fix: float
    fix_objects_per_fix: float
    retained: int


def _fleet(directory: Path) -> None:
    exe = Path(sys.executable).parent / "fleetwatch"
    cmd = [str(exe), "simulate", "fleet", "--vehicles", "1000", "--duration", "1d", "--out", str(directory)]
    subprocess.run(cmd, check=True, capture_output=True)


def _measure(at: datetime, fixes_since: int, states: dict[str, VehicleState]) -> Sample:
    sizes = [len(dump_state(st)) for st in states.values()]
    retained = sum(len(st.history) for st in states.values())
    rows = sum(len(st.history.rows) for st in states.values())
    checkpoints = sum(len(s.core) for st in states.values() for s in st.snapshots)
    # baseline: the same retained fixes as objects (one vehicle in ten is enough to average)
    sample = list(states.values())[::10]
    as_objects = [
        unpack(row, st.vehicle_id, st.devices) for st in sample for row in st.history.since(st.history.base)
    ]
    objects_per_fix = len(pickle.dumps(as_objects, pickle.HIGHEST_PROTOCOL)) / max(1, len(as_objects))
    return Sample(
        at, fixes_since, len(states), statistics.median(sizes), max(sizes), rows / max(1, retained),
        checkpoints / max(1, retained), objects_per_fix, retained,
    )  # fmt: skip


def _peak_rss_mb(cmd: list[str]) -> float:
    """That child's own peak RSS (wait4 reports its rusage alone), in MB."""
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{cmd[0]} exited {child.returncode}")
    return usage.ru_maxrss / 1024  # KB on Linux


def _report_rss(world: Path) -> None:
    exe = str(Path(sys.executable).parent / "fleetwatch")
    parse_only = [sys.executable, "-c", _PARSE_ONLY, str(world / "fixes.jsonl")]
    floor = _peak_rss_mb(parse_only)
    out = Path(tempfile.mkdtemp(prefix="bench-state-out-"))
    detect = [exe, "detect", "--config", str(world / "rules.yaml"), "--orders", str(world / "orders.jsonl"),
              str(world / "fixes.jsonl"), "--out", str(out), "--no-future-check"]  # fmt: skip
    peak = _peak_rss_mb(detect)
    console.print(
        f"peak RSS over the whole day: detect {peak:,.0f} MB; parse-only child {floor:,.0f} MB "
        f"(detect = {peak / floor:.1f}x parse-only)"
    )


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    world = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="bench-state-"))
    if not args:
        console.print(f"generating a 1,000-vehicle day into {world} ...")
        _fleet(world)
    if "--skip-rss" not in sys.argv:
        # First, while this process is small: a child's peak RSS includes what it shares with
        # its parent at fork time.
        _report_rss(world)
    rules = load_rules(world / "rules.yaml")
    orders = [parse_order(x) for x in (world / "orders.jsonl").read_bytes().splitlines() if x.strip()]
    ctx = Context(rules, OrderBook.of(orders))
    states: dict[str, VehicleState] = {}
    samples: list[Sample] = []
    next_at: datetime | None = None
    since = 0
    with (world / "fixes.jsonl").open("rb") as fh:
        for raw in fh:
            try:
                fix = parse_fix(raw, now=_NOW)
            except ContractError:
                continue
            if next_at is None:
                local = fix.ts.astimezone(rules.defaults.tz)
                next_at = local.replace(hour=0, minute=0, second=0, microsecond=0) + EVERY
            while fix.ts >= next_at:
                samples.append(_measure(next_at, since, states))
                next_at, since = next_at + EVERY, 0
            states[fix.vehicle_id], _ = process(states.get(fix.vehicle_id), fix, ctx)
            since += 1

    table = Table(title=f"per-vehicle state, {len(states):,} vehicles fed in time order ({world.name})")
    for col in ("at", "fixes in last 30 min", "persisted median", "persisted max", "history B/fix",
                "checkpoints B/fix", "as Fix objects B/fix", "retained fixes"):  # fmt: skip
        table.add_column(col, justify="right")
    busiest = max(samples, key=lambda s: s.fixes_since)
    for s in samples:
        style = "bold" if s is busiest else None
        table.add_row(
            f"{s.at:%H:%M}", f"{s.fixes_since:,}", f"{s.persisted_median:,.0f} B", f"{s.persisted_max:,} B",
            f"{s.rows_per_fix:.0f}", f"{s.checkpoints_per_fix:.0f}", f"{s.fix_objects_per_fix:.0f}",
            f"{s.retained:,}", style=style,
        )  # fmt: skip
    console.print(table)
    day_max = max(s.persisted_max for s in samples)
    console.print(
        f"busiest half hour ends {busiest.at:%H:%M}: persisted state median "
        f"{busiest.persisted_median:,.0f} B, max {busiest.persisted_max:,} B (whole day max {day_max:,} B); "
        f"replay history {busiest.rows_per_fix:.0f} B per retained fix vs "
        f"{busiest.fix_objects_per_fix:.0f} B as pickled Fix "
        f"objects (ratio {busiest.fix_objects_per_fix / busiest.rows_per_fix:.1f}x), plus checkpoints "
        f"{busiest.checkpoints_per_fix:.0f} B per retained fix"
    )
_PARSE_ONLY = """
import sys
from datetime import datetime
from fleetwatch.records import ContractError, parse_fix
now = datetime(9999, 1, 1).astimezone()
with open(sys.argv[1], "rb") as fh:
    for raw in fh:
        try:
            parse_fix(raw, now=now)
        except ContractError:
            pass
"""

if __name__ == "__main__":
    main()
