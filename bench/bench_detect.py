"""Benchmark: `detect` throughput (fixes/s) over a labelled dataset vs parsing alone, same run.

    .venv/bin/python bench/bench_detect.py [WORLD_DIR]

WORLD_DIR holds rules.yaml, fixes.jsonl and orders.jsonl (e.g. from `fleetwatch simulate scenario
all --out DIR` or `simulate fleet --out DIR`). Without it, the full scenario set is generated with
faults (12 % duplicates, 6 % reordering, late bursts, 1 % malformed) into a temporary directory.
The baseline is `parse_fix` over the same lines (the floor any consumer pays); the ratio says
what share of parse-only speed the whole core (dedup, reorder, enrich, detect, exempt) keeps.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from fleetwatch.records import ContractError, parse_fix, parse_order
from geofence import load_rules
from streams.core import Context, OrderBook, detect_lines

_NOW = datetime(9999, 1, 1).astimezone()


def _generate(directory: Path) -> None:
    exe = Path(sys.executable).parent / "fleetwatch"
    faults = ["--duplicates", "0.12", "--reorder", "0.06", "--late-bursts", "2", "--malformed", "0.01"]
    cmd = [str(exe), "simulate", "scenario", "all", "--out", str(directory), "--seed", "1", *faults]
    subprocess.run(cmd, check=True, capture_output=True)


def main() -> None:
    if len(sys.argv) > 1:
        world = Path(sys.argv[1])
    else:
        world = Path(tempfile.mkdtemp(prefix="bench-detect-"))
        _generate(world)
    lines = (world / "fixes.jsonl").read_bytes().splitlines()
    rules = load_rules(world / "rules.yaml")
    orders_path = world / "orders.jsonl"
    orders = []
    if orders_path.exists():
        orders = [parse_order(x) for x in orders_path.read_bytes().splitlines() if x.strip()]

    best_parse = best_detect = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        ok = 0
        for raw in lines:
            try:
                parse_fix(raw, now=_NOW)
                ok += 1
            except ContractError:
                pass
        best_parse = min(best_parse, time.perf_counter() - t0)

        t0 = time.perf_counter()
        result = detect_lines(lines, Context(rules, OrderBook.of(orders)), now=_NOW)
        best_detect = min(best_detect, time.perf_counter() - t0)

    n = len(lines)
    print(f"dataset: {world} — {n:,} lines, {ok:,} valid fixes, {len(rules.vehicles)} vehicles")
    print(f"result: {len(result.trips)} trips, {len(result.alerts)} alerts, {result.duplicates} duplicates")
    print(f"baseline parse_fix only: {n / best_parse:10,.0f} lines/s  ({best_parse:.2f} s, best of 3)")
    print(f"detect (whole core):     {n / best_detect:10,.0f} lines/s  ({best_detect:.2f} s, best of 3)")
    ratio = best_parse / best_detect
    print(f"ratio detect / parse-only: {ratio:.2f} (detect costs {1 / ratio:.1f}x parsing)")


if __name__ == "__main__":
    main()
