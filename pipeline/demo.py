"""`fleetwatch demo`: the whole pipeline under the supervisor, fed by the simulator (the scenario
set plus a background fleet), a live view, then a summary scored against the simulator's truth."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from evidence.report import MapZone
from evidence.snapshot import write_snapshot
from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets
from fleetwatch.records import Alert, AlertType, ContractError, Severity, parse_fix
from fleetwatch.settings import Settings
from geofence import load_rules
from pipeline.observe import Observer, Sample, health_table, live_view
from pipeline.services import Layout, pipeline_specs, wait_workers_started
from pipeline.supervisor import Supervisor
from store.db import connect
from streams.core.scoring import parse_truth, score

console = Console(width=None if sys.stdout.isatty() else 150)
SCENARIO_NAMESPACE = "demo-"  # after --namespace: the scenario vehicles apart from the fleet's
#: Mild transport faults on the scenario set: duplicates, reordering, malformed extras (DLQ).
SCENARIO_FAULTS = ("--duplicates", "0.02", "--reorder", "0.01", "--malformed", "0.005")
TABLES = ("positions", "trips", "alerts", "alert_events", "orders", "vehicle_state", "notify_deliveries")
NOTIFY_ROUTES = {
    "channels": {"app": {"type": "mqtt"}},
    "routes": [
        {"name": "province", "org": "js", "channels": ["app"], "min_severity": "yellow",
         "managers": [{"name": "demo manager"}]},
    ],
}  # fmt: skip


class DemoError(RuntimeError):
    pass


@dataclass
class Options:
    vehicles: int = 200
    duration: str = "1d"
    seed: int = 7
    scenarios: str = "all"
    rate: float = 0.0
    workers: int = 1
    out: Path = Path("out/demo")
    keep_running: bool = False
    settle_s: float = 40.0
    timeout_s: float = 1800.0
    idle_close_s: float = 20.0
    namespace: str = ""


@dataclass
class Summary:
    seconds: float
    messages_sent: int
    valid_fixes: int
    positions_stored: int
    alerts: int
    truth_lines: int
    score: dict[str, dict[str, Any]]
    misses: int
    false_alarms: int
    rows: dict[str, int]
    notifications: dict[str, int]
    evidence_report: str | None
    grafana_provisioning: str
    snapshot: str
    snapshot_vehicles: int
    snapshot_open_alerts: int
    restarts: dict[str, int] = field(default_factory=dict)


def fleetwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetwatch", *args]


def run_fw(log: Path, *args: str, timeout: float = 600) -> None:
    """A `fleetwatch` subcommand to completion, its output appended to ``log``."""
    with log.open("ab") as fh:
        fh.write(f"\n$ fleetwatch {' '.join(args)}\n".encode())
        fh.flush()
        code = subprocess.run(
            fleetwatch(*args), stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
        ).returncode
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise DemoError(f"`fleetwatch {' '.join(args)}` exited {code}; {log}:\n{tail}")


# --- the world ----------------------------------------------------------------------------------
def scenario_args(opts: Options) -> list[str]:
    return ["simulate", "scenario", opts.scenarios, "--seed", str(opts.seed),
            "--namespace", opts.namespace + SCENARIO_NAMESPACE,
            *SCENARIO_FAULTS]  # fmt: skip


def fleet_args(opts: Options) -> list[str]:
    return ["simulate", "fleet", "--vehicles", str(opts.vehicles), "--duration", opts.duration,
            "--seed", str(opts.seed), "--namespace", opts.namespace]  # fmt: skip


def build_world(opts: Options, world: Path, log: Path) -> None:
    """The scenario set and the fleet written as world directories by the simulator (the same
    seeds it then publishes), merged into one: rules.yaml with every vehicle, truth, orders."""
    parts = {"scenarios": scenario_args(opts), "fleet": fleet_args(opts)}
    for name, args in parts.items():
        shutil.rmtree(world / name, ignore_errors=True)
        run_fw(log, *args, "--out", str(world / name))
    rules = yaml.safe_load((world / "fleet" / "rules.yaml").read_text(encoding="utf-8"))
    rules["vehicles"] += yaml.safe_load((world / "scenarios" / "rules.yaml").read_text(encoding="utf-8"))[
        "vehicles"
    ]
    ids = [v["vehicle_id"] for v in rules["vehicles"]]
    if len(set(ids)) != len(ids):
        raise DemoError(
            f"the scenario set and the fleet share plates with --namespace {opts.namespace!r}: try another"
        )
    for zone_file in (world / "fleet" / "zones").iterdir():  # same seed: the same geography
        if zone_file.read_bytes() != (world / "scenarios" / "zones" / zone_file.name).read_bytes():
            raise DemoError(f"zones differ between the scenario set and the fleet: {zone_file.name}")
    shutil.rmtree(world / "zones", ignore_errors=True)
    shutil.copytree(world / "fleet" / "zones", world / "zones")
    (world / "rules.yaml").write_text(
        yaml.safe_dump(rules, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    for name in ("truth.jsonl", "orders.jsonl", "fixes.jsonl"):
        (world / name).write_bytes(b"".join((world / part / name).read_bytes() for part in parts))
    (world / "notify.yaml").write_text(yaml.safe_dump(NOTIFY_ROUTES, allow_unicode=True), encoding="utf-8")


@dataclass(frozen=True)
class Sent:
    messages: int
    valid: int  # distinct fixes that pass the contract
    first: datetime
    last: datetime


def sent_fixes(world: Path) -> Sent:
    """What the world's fixes.jsonl holds: messages, valid distinct fixes, their time span."""
    keys: set[tuple[str, int]] = set()
    messages = 0
    first = last = None
    with (world / "fixes.jsonl").open("rb") as fh:
        for line in fh:
            messages += 1
            try:
                fix = parse_fix(line.rstrip(b"\n"), max_future=timedelta(days=3650))
            except ContractError:
                continue
            keys.add((fix.device_id, fix.seq))
            first = fix.ts if first is None else min(first, fix.ts)
            last = fix.ts if last is None else max(last, fix.ts)
    if first is None or last is None:
        raise DemoError(f"{world / 'fixes.jsonl'} holds no valid fix")
    return Sent(messages, len(keys), first, last)


# --- settling --------------------------------------------------------------------------------------
def settled(samples: list[Sample], observer: Observer, settle_s: float) -> bool:
    """Every group caught up, and nothing changed in the database for ``settle_s``."""
    last = samples[-1]
    if any(last.lag(g, t) for g, ts in observer.groups.items() for t in ts):
        return False
    recent = [s for s in samples if last.at - s.at <= settle_s]
    if last.at - recent[0].at < settle_s * 0.9:
        return False
    return all(s.positions == last.positions and s.alerts == last.alerts for s in recent)


# --- the summary ----------------------------------------------------------------------------------
def stored_alerts(conn: Any, vehicle_ids: list[str], sent: Sent) -> list[Alert]:
    """This world's alerts: its vehicles', starting within its fixes' span (a plate may have
    alerts from other datasets at other times in a shared database)."""
    rows = conn.execute(
        "SELECT alert_id, type, vehicle_id, org, start_at, end_at, lat, lon, raised_at, severity FROM alerts "
        "WHERE vehicle_id = ANY(%s) AND status <> 'retracted' AND start_at BETWEEN %s AND %s",
        (vehicle_ids, sent.first, sent.last),
    ).fetchall()
    return [
        Alert(aid, AlertType(kind), vid, org, start, end, lat, lon, raised, severity=Severity(sev))
        for aid, kind, vid, org, start, end, lat, lon, raised, sev in rows
    ]


def pick_alert(alerts: list[Alert]) -> Alert | None:
    """The most telling alert for the evidence report: a red private-destination stop if any."""
    order = [AlertType.PRIVATE_DESTINATION, AlertType.OFF_HOURS, AlertType.OUT_OF_AREA]
    return min(
        alerts,
        key=lambda a: (
            order.index(a.type) if a.type in order else len(order),
            a.severity != Severity.RED,
            a.start,
        ),
        default=None,
    )


def summarize(settings: Settings, opts: Options, world: Path, began: float, supervisor: Supervisor,
              sent: Sent, log: Path) -> Summary:  # fmt: skip
    rules_doc = yaml.safe_load((world / "rules.yaml").read_text(encoding="utf-8"))
    vehicle_ids = [v["vehicle_id"] for v in rules_doc["vehicles"]]
    devices = [v["device_id"] for v in rules_doc["vehicles"]]
    truth = parse_truth((world / "truth.jsonl").read_bytes().splitlines(), "truth.jsonl")
    with connect(settings, autocommit=True) as conn:
        alerts = stored_alerts(conn, vehicle_ids, sent)
        report = score(truth, alerts)

        def count(sql: str, *args: object) -> int:
            row = conn.execute(sql, args).fetchone()
            return int(row[0]) if row else 0  # type: ignore[call-overload]

        stored = count("SELECT count(*) FROM positions WHERE device_id = ANY(%s)", devices)
        rows = {t: count(f"SELECT count(*) FROM {t}") for t in TABLES}
        notifications = {
            str(status): int(n)  # type: ignore[call-overload]
            for status, n in conn.execute("SELECT status, count(*) FROM notify_deliveries GROUP BY 1")
        }
        rules = load_rules(world / "rules.yaml")
        zones = [MapZone(z.name, z.kind, z.geometry) for z in rules.zones if z.kind == "region"]
        snapshot = opts.out / "snapshot.html"
        dots, open_alerts = write_snapshot(conn, snapshot, zones, settings.local_timezone, vehicle_ids)
    chosen = pick_alert(alerts)
    evidence = None
    if chosen is not None:
        directory = opts.out / f"evidence-{chosen.alert_id[:12]}"
        end = chosen.end or chosen.start
        run_fw(log, "evidence", "--plate", chosen.vehicle_id,
               "--from", (chosen.start - timedelta(hours=1)).isoformat(),
               "--to", (end + timedelta(hours=1)).isoformat(), "--rules", str(world / "rules.yaml"),
               "--out", str(directory))  # fmt: skip
        evidence = str(directory / "report.html")
    grafana = opts.out / "grafana"
    run_fw(
        log,
        "dashboards",
        "provision",
        "--out",
        str(grafana),
        "--regions",
        str(world / "zones" / "regions.geojson"),
    )
    return Summary(
        seconds=round(time.monotonic() - began, 1),
        messages_sent=sent.messages,
        valid_fixes=sent.valid,
        positions_stored=stored,
        alerts=len(alerts),
        truth_lines=sum(1 for t in truth if t.expect),
        score={
            kind: {
                "expected": r.expected,
                "must_not": r.must_not,
                "alerts": r.alerts,
                "found": r.found,
                "precision": r.precision,
                "recall": r.recall,
            }
            for kind, r in sorted(report.by_type.items())
        },
        misses=len(report.misses),
        false_alarms=len(report.false_alarms),
        rows=rows,
        notifications=notifications,
        evidence_report=evidence,
        grafana_provisioning=str(grafana / "provisioning"),
        snapshot=str(snapshot),
        snapshot_vehicles=len(dots),
        snapshot_open_alerts=len(open_alerts),
        restarts={h.name: h.restarts for h in supervisor.health()},
    )


def print_summary(summary: Summary) -> None:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    scores = Table(title="alerts vs the simulator's ground truth (overlap ±120 s)")
    for col in ("type", "expected", "must not", "alerts", "found", "precision", "recall"):
        scores.add_column(col, justify="left" if col == "type" else "right")
    for kind, r in summary.score.items():
        scores.add_row(kind, str(r["expected"]), str(r["must_not"]), str(r["alerts"]), str(r["found"]),
                       fmt(r["precision"]), fmt(r["recall"]))  # fmt: skip
    scores.caption = f"misses {summary.misses}, false alarms {summary.false_alarms}"
    counts = Table(title="the run")
    counts.add_column("what")
    counts.add_column("value", justify="right")
    for what, value in (
        ("MQTT messages sent (incl. duplicates, malformed)", f"{summary.messages_sent:,}"),
        ("valid distinct fixes sent", f"{summary.valid_fixes:,}"),
        ("positions rows of these devices", f"{summary.positions_stored:,}"),
        ("lost", f"{summary.valid_fixes - summary.positions_stored:,}"),
        ("alerts stored (not retracted)", f"{summary.alerts:,}"),
        ("seconds", f"{summary.seconds:,.0f}"),
        ("service restarts", ", ".join(f"{n} {r}" for n, r in summary.restarts.items())),
    ):
        counts.add_row(what, value)
    tables = Table(title="rows per table")
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    for name, n in summary.rows.items():
        tables.add_row(name, f"{n:,}")
    paths = Table(title="files")
    paths.add_column("what")
    paths.add_column("path")
    paths.add_row("HTML snapshot (open in a browser)", summary.snapshot)
    paths.add_row("evidence report of one alert", summary.evidence_report or "(no alert)")
    paths.add_row("Grafana provisioning (paths.provisioning)", summary.grafana_provisioning)
    for table in (scores, counts, tables, paths):
        console.print(table)


# --- the command ----------------------------------------------------------------------------------
def run_demo(opts: Options, stop: threading.Event) -> Summary | None:
    settings = Settings()
    began = time.monotonic()
    opts.out.mkdir(parents=True, exist_ok=True)
    world, logs = opts.out / "world", opts.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "demo.log"
    with console.status("simulator: writing the scenario set and the fleet"):
        build_world(opts, world, log)
        sent = sent_fixes(world)
    console.print(f"world {world}: {sent.messages:,} messages, {sent.valid:,} valid fixes")
    run_fw(log, "db", "import-registry", str(world / "rules.yaml"))
    env = {"FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS": f"{opts.idle_close_s:g}"}
    layout = Layout(world / "rules.yaml", world / "notify.yaml", workers=opts.workers)
    events: list[str] = []

    def note(name: str, text: str) -> None:
        events.append(f"{time.strftime('%H:%M:%S')} {name}: {text}")

    supervisor = Supervisor(pipeline_specs(layout, env), logs, on_event=note)
    publishers: list[subprocess.Popen[bytes]] = []
    observer: Observer | None = None
    try:
        ops_since = end_offsets(settings, topics.OPS)
        supervisor.start()
        with console.status("starting bridge, worker(s), sink, notifier"):
            workers = [f"worker-{i}" for i in range(1, opts.workers + 1)]
            wait_workers_started(settings, workers, ops_since, stop)
            run_fw(log, "orders", "add", str(world / "orders.jsonl"))
        rate = ["--rate", f"{opts.rate:g}"] if opts.rate else []
        for name, args in (("scenarios", [*scenario_args(opts), "--mqtt"]),
                           ("fleet", [*fleet_args(opts), "--mqtt", "--processes", "1", *rate])):  # fmt: skip
            with (logs / f"simulate-{name}.log").open("ab") as fh:
                publishers.append(subprocess.Popen(fleetwatch(*args), stdout=fh, stderr=subprocess.STDOUT))
        observer = Observer(settings)
        samples = [observer.sample()]

        def step(phase: str) -> None:
            stop.wait(2.0)
            samples.append(observer.sample())
            del samples[:-120]
            header = f"[bold]fleetwatch demo[/] — {phase}, {time.monotonic() - began:.0f} s; logs {logs}/"
            header += "".join(f"\n  {e}" for e in events[-4:])
            services = health_table(supervisor.health())
            live.update(live_view(settings, samples[-1], samples[-2], header, services))

        with Live(console=console, refresh_per_second=2) as live:
            while not stop.is_set():
                publishing = [p for p in publishers if p.poll() is None]
                step("publishing" if publishing else "settling")
                failed = [p.returncode for p in publishers if p.returncode not in (None, 0)]
                if failed:
                    raise DemoError(f"the simulator failed (exit {failed}); see {logs}/simulate-*.log")
                if not publishing and settled(samples, observer, opts.settle_s):
                    break
                if time.monotonic() - began > opts.timeout_s:
                    raise DemoError(
                        f"the pipeline did not settle within {opts.timeout_s:g} s; logs in {logs}"
                    )
        console.print()
        if stop.is_set():
            return None
        summary = summarize(settings, opts, world, began, supervisor, sent, log)
        (opts.out / "summary.json").write_text(json.dumps(asdict(summary), indent=1), encoding="utf-8")
        print_summary(summary)
        if opts.keep_running:
            console.print("[bold]--keep-running:[/] the pipeline stays up; Ctrl-C stops everything")
            with Live(console=console, refresh_per_second=1) as live:
                while not stop.is_set():
                    step("live (Ctrl-C stops)")
        return summary
    finally:
        for p in publishers:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        with console.status("stopping the pipeline"):
            codes = supervisor.stop()
        if observer is not None:
            observer.close()
        console.print("stopped: " + ", ".join(f"{n} (exit {c})" for n, c in codes.items()))


def demo_cmd(
    vehicles: Annotated[int, typer.Option(help="Background fleet size.", min=1)] = 200,
    duration: Annotated[str, typer.Option(help="Simulated span of the fleet, e.g. 1d, 6h.")] = "1d",
    scenarios: Annotated[str, typer.Option(help="Scenario names (comma-separated) or 'all'.")] = "all",
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 7,
    rate: Annotated[float, typer.Option(help="Fleet publish rate, fixes/s (0 = as fast as it goes).")] = 0.0,
    workers: Annotated[int, typer.Option(min=1, help="Worker instances.")] = 1,
    out: Annotated[Path, typer.Option(help="Logs, world, snapshot, evidence, summary.json.")] = Path(
        "out/demo"
    ),
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Stay live after the summary.")
    ] = False,
    settle: Annotated[float, typer.Option(help="Seconds without change that count as done.")] = 40.0,
    namespace: Annotated[str, typer.Option(help="Device id prefix of every simulated vehicle.")] = "",
) -> None:
    """The whole pipeline fed by the simulator, live, then scored against its ground truth."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    opts = Options(
        vehicles, duration, seed, scenarios, rate, workers, out, keep_running, settle, namespace=namespace
    )
    try:
        summary = run_demo(opts, stop)
    except (DemoError, TimeoutError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if summary is None:
        console.print("interrupted: everything stopped")
        raise typer.Exit(130)
