"""Fuzz every parser of outside input at volume: cases run, outcomes and crashes per parser.

Seeded hypothesis generation (tests/fuzzing.py: valid inputs, structured mutations of them, byte
mutations, raw bytes, adversarial classics). A crash is any exception other than the parser's own
error (ContractError / FrameError / RulesError / ZoneError / a dead-letter Rejection), or a case
running longer than 10 s. Exit status 1 if any parser crashed.

    .venv/bin/python bench/bench_fuzz.py [--cases 100000] [--seed 808] [--only fix,order,rules,zones,jt808]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from tests.fuzzing import TARGETS, Crash, Report, fuzz

console = Console(width=None if sys.stdout.isatty() else 170)


def crash_kind(crash: Crash) -> str:
    """Exception type + the innermost project frame: one line per distinct bug."""
    frames = re.findall(
        r'File "[^"]*/((?:fleetwatch|geofence|ingest|streams)/[^"]+)", line (\d+)', crash.trace
    )
    where = ":".join(frames[-1]) if frames else "?"
    return f"{crash.error.split(':')[0]} at {where}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per parser")
    parser.add_argument("--seed", type=int, default=808)
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated parsers")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    reports: list[tuple[str, Report, float]] = []
    for name in names:
        started = time.monotonic()

        def progress(report: Report, started: float = started, name: str = name) -> None:
            rate = report.cases / max(time.monotonic() - started, 1e-9)
            console.print(
                f"  {name}: {report.cases:,}/{args.cases:,} cases, {len(report.crashes)} crash(es), "
                f"{rate:,.0f}/s",
                highlight=False,
            )

        console.print(f"[bold]{name}[/]: {args.cases:,} cases, seed {args.seed}")
        report = fuzz(name, args.cases, args.seed, progress=progress, progress_every=max(args.cases // 10, 1))
        reports.append((name, report, time.monotonic() - started))

    table = Table(title=f"fuzzing, seed {args.seed}")
    for col in (
        "parser",
        "what",
        "cases",
        "accepted",
        "rejected (clear error)",
        "crashes",
        "slowest case",
        "cases/s",
    ):
        table.add_column(col, justify="left" if col in ("parser", "what") else "right")
    for name, report, took in reports:
        other = report.cases - report.outcomes["accepted"] - report.outcomes["rejected"] - len(report.crashes)
        accepted = f"{report.outcomes['accepted']:,}" + (f" (+{other:,} parts/empty)" if other else "")
        table.add_row(
            name,
            report.what,
            f"{report.cases:,}",
            accepted,
            f"{report.outcomes['rejected']:,}",
            str(len(report.crashes)),
            f"{report.slowest_s * 1000:.0f} ms",
            f"{report.cases / took:,.0f}",
        )
    console.print(table)
    crashed = False
    for name, report, _ in reports:
        kinds: dict[str, Crash] = {}
        for crash in report.crashes:
            kinds.setdefault(crash_kind(crash), crash)
        for kind, crash in kinds.items():
            crashed = True
            count = sum(1 for c in report.crashes if crash_kind(c) == kind)
            console.print(
                f"[red]{name}: {count} x {kind}[/]: {crash.error}\n  case: {crash.case[:300]}",
                highlight=False,
            )
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
