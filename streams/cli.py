"""`fleetwatch detect` (offline replay through the detection core) and `fleetwatch score`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich import box
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
    app.command("score")(score_cmd)


def detect(
    fixes: Annotated[Path, typer.Argument(help="Telemetry fix v1 JSON lines (any arrival order).")],
    config: Annotated[
        Path, typer.Option("--config", "-c", help="rules.yaml (zone files resolve next to it).")
    ],
    orders: Annotated[
        Path | None, typer.Option(help="Dispatch orders, JSON lines (approved ones exempt).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory [default: the fixes file's directory].")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="Receiver clock for the 'stamped in the future' check (RFC 3339) [default: real clock]."
        ),
    ] = None,
    no_future_check: Annotated[
        bool,
        typer.Option("--no-future-check", help="Skip the future-timestamp check (clock of capture unknown)."),
    ] = False,
    late_horizon: Annotated[
        float | None,
        typer.Option(
            help="Seconds back a late fix is still re-evaluated (older ones are reported) "
            "[default: FLEETWATCH_LATE_HORIZON_SECONDS, 10800]."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 2 and write nothing if any fix falls on a date the work calendar does not cover "
            "(default: off-hours is undetermined for that vehicle-day, everything else goes on).",
        ),
    ] = False,
) -> None:
    """Run the detection core over a fixes file: writes trips.jsonl, alerts.jsonl and
    dead_letters.jsonl (lines that fail the contract, with the reason)."""
    from fleetwatch.records import ContractError, parse_order, parse_timestamp
    from fleetwatch.settings import get_settings
    from geofence import RulesError, ZoneError, load_rules
    from streams.core import STAGES, Context, OrderBook, detect_lines

    try:
        rules = load_rules(config)
    except (RulesError, ZoneError) as exc:
        console.print(f"[red]rules error:[/] {exc}")
        raise typer.Exit(2) from None
    book = OrderBook()
    if orders is not None:
        for no, line in enumerate(orders.read_bytes().splitlines(), start=1):
            if line.strip():
                try:
                    book.add(parse_order(line))
                except ContractError as exc:
                    console.print(f"[red]{orders}:{no}:[/] {exc}")
                    raise typer.Exit(2) from None
    else:
        console.print("[yellow]no --orders given: no dispatch-order exemptions will apply[/]")
    clock = parse_timestamp(now, "--now") if now else datetime.now(UTC)
    out_dir = out or fixes.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    ctx = Context(
        rules,
        book,
        late_horizon_seconds=late_horizon if late_horizon is not None else settings.late_horizon_seconds,
        snapshot_every_seconds=settings.snapshot_every_seconds,
    )
    console.print(f"stages: {' -> '.join(STAGES)}; {len(rules.zones)} zones, {len(rules.vehicles)} vehicles")
    started = time.perf_counter()
    with fixes.open("rb") as fh, Progress(transient=True, console=console) as progress:
        task = progress.add_task("detecting", total=fixes.stat().st_size)
        result = detect_lines(
            _tracked(fh, progress, task), ctx, now=clock, check_future=not no_future_check,
            max_future=timedelta(seconds=settings.max_future_seconds), max_speed_kmh=settings.max_speed_kmh,
        )  # fmt: skip
    elapsed = time.perf_counter() - started
    years = ", ".join(str(y) for y in result.missing_years())
    if years and strict:
        first = min(result.calendar_missing.values(), key=lambda d: str(d["date"]))
        console.print(f"[red]calendar error (--strict):[/] {first['reason']}; nothing written")
        raise typer.Exit(2)

    _write(out_dir / "trips.jsonl", (t.to_json() for t in result.sorted_trips()))
    _write(out_dir / "alerts.jsonl", (a.to_json() for a in result.sorted_alerts()))
    _write(out_dir / "dead_letters.jsonl", (orjson.dumps(d.to_dict()) for d in result.dead_letters))
    _write(out_dir / "late_fixes.jsonl", (orjson.dumps(e.to_dict()) for e in result.late))

    by_type: dict[str, int] = {}
    for a in result.alerts.values():
        by_type[a.type.value] = by_type.get(a.type.value, 0) + 1
    table = Table(title=f"fleetwatch detect: {fixes.name}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for kind in sorted(by_type):
        table.add_row(f"alerts: {kind}", str(by_type[kind]))
    table.add_row("alerts (total)", str(len(result.alerts)), end_section=True)
    table.add_row("exempted by an approved order", str(len(result.exempted)))
    table.add_row("trips", str(len(result.trips)))
    table.add_row("lines read", str(result.lines))
    table.add_row("fixes parsed", str(result.fixes))
    table.add_row("duplicates dropped", str(result.duplicates))
    table.add_row("sequence restarts (kept)", str(result.seq_resets))
    table.add_row("late fixes re-evaluated", str(result.reevaluated))
    table.add_row("late fixes beyond horizon (reported)", str(len(result.late)))
    table.add_row("position jumps screened out (kept, not used for place)", str(result.outliers))
    if years:
        table.add_row(
            f"[yellow]calendar missing {years}: off-hours undetermined[/]",
            f"{len(result.calendar_missing)} vehicle-day(s)",
        )
    dead = ", ".join(f"{k} {v}" for k, v in result.dead_letter_codes.most_common())
    table.add_row("dead letters", f"{len(result.dead_letters)}" + (f" ({dead})" if dead else ""))
    rate = result.lines / elapsed if elapsed > 0 else 0.0
    table.add_row("throughput", f"{rate:,.0f} lines/s ({elapsed:.2f} s)")
    console.print(table)
    console.print(f"wrote {out_dir}/trips.jsonl, alerts.jsonl, dead_letters.jsonl, late_fixes.jsonl")
    if years:
        console.print(
            f"[yellow]the work calendar does not cover {years}: add calendar.years.<year> to "
            f"{config.name} (or publish a chinese_calendar update) and re-run for off-hours[/]"
        )


def _tracked(lines: Iterable[bytes], progress: Progress, task: TaskID) -> Iterator[bytes]:
    done = 0
    for n, line in enumerate(lines, start=1):
        done += len(line)
        if n % 5000 == 0:
            progress.update(task, completed=done)
        yield line
    progress.update(task, completed=done)


def _write(path: Path, rows: object) -> None:
    with path.open("wb") as fh:
        for row in rows:  # type: ignore[attr-defined]
            fh.write(row + b"\n")


def score_cmd(
    truth: Annotated[Path, typer.Argument(help="Ground truth JSON lines (docs/world-format.md).")],
    alerts: Annotated[Path, typer.Argument(help="Alerts JSON lines (e.g. from `fleetwatch detect`).")],
    min_score: Annotated[
        float | None, typer.Option(help="Exit 1 if any type's precision or recall is below this.")
    ] = None,
) -> None:
    """Per-type precision and recall of ALERTS against GROUND_TRUTH; lists every miss and false alarm."""
    from streams.core.scoring import TruthError, parse_alerts, parse_truth, score

    try:
        truth_lines = parse_truth(truth.read_bytes().splitlines(), truth.name)
        alert_list = parse_alerts(alerts.read_bytes().splitlines(), alerts.name)
    except (TruthError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    report = score(truth_lines, alert_list)
    table = Table(
        title=f"score: {alerts.name} vs {truth.name} (overlap, ±120 s)",
        caption="exp: truth lines · not: must-not spans · TP: alerts matching truth · "
        "found: truth lines matched · prec: precision · extra: further alerts per violation",
        box=box.SIMPLE_HEAD,
    )
    # Alert type names must stay whole on an 80-column terminal; the figures are short.
    table.add_column("type", no_wrap=True)
    for col in ("exp", "not", "alerts", "TP", "found", "prec", "recall", "extra"):
        table.add_column(col, justify="right", min_width=len(col))
    worst = 1.0
    for kind in sorted(report.by_type):
        r = report.by_type[kind]
        p, rc = r.precision, r.recall
        for v in (p, rc):
            if v is not None:
                worst = min(worst, v)
        table.add_row(
            kind, str(r.expected), str(r.must_not), str(r.alerts), str(r.true_alerts), str(r.found),
            _fmt(p), _fmt(rc), str(r.extra_per_violation),
        )  # fmt: skip
    console.print(table)
    if report.misses:
        misses = Table(title=f"misses ({len(report.misses)})")
        for col in ("line", "type", "vehicle", "start", "end", "scenario", "note"):
            misses.add_column(col)
        for t in report.misses:
            misses.add_row(
                str(t.line_no),
                t.type,
                t.vehicle_id,
                t.start.isoformat(),
                t.end.isoformat(),
                t.scenario,
                t.note,
            )
        console.print(misses)
    if report.false_alarms:
        fas = Table(title=f"false alarms ({len(report.false_alarms)})")
        for col in ("type", "vehicle", "start", "end", "alert_id", "why"):
            fas.add_column(col)
        for fa in report.false_alarms:
            a = fa.alert
            fas.add_row(
                a.type.value,
                a.vehicle_id,
                a.start.isoformat(),
                a.end.isoformat() if a.end else "-",
                a.alert_id,
                fa.reason,
            )
        console.print(fas)
    if not report.misses and not report.false_alarms:
        console.print("[green]no misses, no false alarms[/]")
    if min_score is not None and worst < min_score:
        raise typer.Exit(1)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
