"""Every benchmark, then the end-to-end run, in one command; one markdown report of what each printed.

    .venv/bin/python bench/run_all.py [--quick] [--only e2e,sink] [--skip dashboards] [--report FILE]

Needs the stack (`fleetwatch stack up`). Each benchmark measures its own baseline in the same run
and prints ratios against it (their docstrings say which); this script only runs them in turn,
with the sizes the README's figures used (or small ones with --quick, a smoke test of the suite),
and collects their output, exit codes and times. Long: the full suite takes the best part of an
hour on the 2-core machine (dashboards --load alone loads 12 M positions).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]


WORKER_START = ("--start", "2026-11-25T08:00:00+08:00", "--duration", "2h")
BENCHES = (
    Bench("zones", "bench_zones.py", (), ("--zones", "2000", "--queries", "500", "--linear-queries", "50")),
    Bench("detect", "bench_detect.py", (), ()),
    Bench("state", "bench_state.py", (), ("--skip-rss",)),
    Bench("simulator", "bench_simulator.py", (), ("--vehicles", "100", "--messages", "10000")),
    Bench("ingest", "bench_ingest.py", (), ("--fixes", "10000")),
    Bench(
        "jt808",
        "bench_jt808.py",
        (),
        ("--decode-frames", "5000", "--seconds", "5", "--terminals", "500", "--window", "15"),
    ),
    Bench(
        "broker-crash",
        "bench_broker_crash.py",
        ("--intervals", "30,5,1"),
        ("--intervals", "5", "--kill-after", "8"),
    ),
    Bench(
        "worker",
        "bench_worker.py",
        ("--vehicles", "1000", *WORKER_START),
        ("--vehicles", "100", *WORKER_START),
    ),
    Bench("sink", "bench_sink.py", (), ("--fixes", "20000", "--rounds", "1", "--batch", "5000")),
    Bench("dashboards", "bench_dashboards.py", ("--load",), ("--repeat", "1", "--map-vehicles", "2000")),
    Bench(
        "e2e",
        "bench_e2e.py",
        ("--rate", "5000", "--duration", "300"),
        ("--rate", "500", "--duration", "30", "--warmup", "5", "--devices", "200", "--profile", "none"),
    ),
)


def run(bench: Bench, quick: bool, logs: Path, report_dir: Path) -> tuple[int, float, str]:
    args = list(bench.quick if quick else bench.full)
    if bench.name == "e2e":
        args += ["--report", str(report_dir / "e2e.md")]
    command = [sys.executable, str(BENCH / bench.script), *args]
    log = logs / f"{bench.name}.log"
    began = time.monotonic()
    with log.open("wb") as fh:
        fh.write(f"$ {' '.join(command)}\n".encode())
        fh.flush()
        code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                              env={**os.environ, "COLUMNS": "140", "NO_COLOR": "1"}).returncode  # fmt: skip
    return code, time.monotonic() - began, ANSI.sub("", log.read_text(errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of every benchmark")
    parser.add_argument(
        "--only", default="", help="comma-separated names: " + ", ".join(b.name for b in BENCHES)
    )
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--report", type=Path, default=ROOT / "out" / "bench" / "report.md")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    unknown = (only | skip) - {b.name for b in BENCHES}
    if unknown:
        sys.exit(f"unknown benchmark(s) {sorted(unknown)}; known: {', '.join(b.name for b in BENCHES)}")
    chosen = [b for b in BENCHES if (not only or b.name in only) and b.name not in skip]
    report_dir = args.report.parent
    logs = report_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    rows, sections = [], []
    for bench in chosen:
        print(f"==> {bench.name} ({bench.script})", flush=True)
        code, seconds, output = run(bench, args.quick, logs, report_dir)
        status = "ok" if code == 0 else f"**exit {code}**"
        print(f"    {status} in {seconds:.0f} s", flush=True)
        rows.append(f"| {bench.name} | `{bench.script}` | {status} | {seconds:.0f} |")
        body = (report_dir / "e2e.md").read_text() if bench.name == "e2e" and code == 0 else (
            "```\n" + "\n".join(output.splitlines()[-80:]) + "\n```"
        )  # fmt: skip
        sections.append(f"## {bench.name}\n\nLog: `{logs / (bench.name + '.log')}`\n\n{body}\n")
    load = os.getloadavg()
    head = [
        f"# fleetwatch benchmarks ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        + (", --quick)" if args.quick else ")"),
        "",
        f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end "
        "(figures from a shared machine: compare the ratios each benchmark prints, not absolute rates).",
        "",
        "| benchmark | script | result | seconds |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    args.report.write_text("\n".join(head + sections), encoding="utf-8")
    print(f"report: {args.report}")
    if any("exit" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
