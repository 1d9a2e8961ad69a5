"""`fleetwatch dashboards build | check | provision | demo`."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)
dashboards_app = typer.Typer(
    help="Grafana dashboards: JSON, provisioning, checks, demo data.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("build")
def build_cmd() -> None:
    """Render the dashboards from their Python definitions into dashboards/json/ (commit the result)."""
    from dashboards.build import write_json

    for path in write_json():
        console.print(f"[green]✓[/] {path}")


def _parse_time(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    if text == "now":
        return datetime.now(UTC)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r}: give a UTC offset, e.g. 2026-11-25T08:00:00+08:00")
    return moment


@dashboards_app.command("check")
def check_cmd(
    live: Annotated[bool, typer.Option(help="Also run every query against the database.")] = True,
    user: Annotated[
        str | None,
        typer.Option(
            help="Login to run them as [default: the dashboards login, FLEETWATCH_PG_DASHBOARDS_USER]."
        ),
    ] = None,
    password_env: Annotated[
        str | None, typer.Option(help="Environment variable holding --user's password.")
    ] = None,
    time_from: Annotated[
        str | None, typer.Option("--from", help="Range start, RFC 3339 [default: now - 7 days].")
    ] = None,
    time_to: Annotated[
        str | None, typer.Option("--to", help="Range end, RFC 3339 or 'now' [default: now].")
    ] = None,
    var: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE[,VALUE...]: pick variable values.")
    ] = None,
) -> None:
    """Static checks (uids, datasources, variables, SDK decoding, committed JSON current), then every
    variable, panel and annotation query interpolated as Grafana would, with its shape checked."""
    from dashboards.build import load_committed, stale_files
    from dashboards.check import connect_as, run_dashboard, static_problems
    from fleetwatch.settings import Settings

    problems = [
        f"{name}: committed JSON is not what `fleetwatch dashboards build` renders" for name in stale_files()
    ]
    boards = load_committed()
    problems += static_problems(boards)
    for problem in problems:
        console.print(f"[red]✗[/] {escape(problem)}")
    console.print(f"static: {len(boards)} dashboards, {len(problems)} problem(s)")
    failed = bool(problems)
    if live:
        settings = Settings()
        login = user or settings.pg_dashboards_user
        password = (
            os.environ.get(password_env, "") if password_env else settings.secret("pg_dashboards_password")
        )
        end = _parse_time(time_to, datetime.now(UTC))
        start = _parse_time(time_from, end - timedelta(days=7))
        overrides = {}
        for spec in var or []:
            name, _, values = spec.partition("=")
            overrides[name] = values.split(",")
        table = Table(
            title=f"queries as {login}, {start.isoformat(timespec='minutes')} .. "
            f"{end.isoformat(timespec='minutes')}"
        )
        for column in ("dashboard", "query", "rows", "ms", "columns", "problems"):
            table.add_column(column, justify="right" if column in ("rows", "ms") else "left")
        with connect_as(settings, login, password) as conn:
            for board in boards.values():
                for r in run_dashboard(conn, board, start, end, overrides):
                    failed = failed or bool(r.problems)
                    table.add_row(
                        r.dashboard,
                        escape(r.where),
                        f"{r.rows:,}",
                        f"{r.seconds * 1000:.1f}",
                        escape(", ".join(c for c, _ in r.columns)),
                        "[red]" + escape("; ".join(r.problems)) + "[/]" if r.problems else "[green]ok[/]",
                    )
        console.print(table)
    if failed:
        raise typer.Exit(1)


@dashboards_app.command("provision")
def provision_cmd(
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write the Grafana provisioning tree into.")
    ],
    regions: Annotated[
        Path | None,
        typer.Option(help="GeoJSON (WGS-84) of the permitted regions [default: the demo world's]."),
    ] = None,
) -> None:
    """Write provisioning/ (datasource as the read-only login, dashboards provider), dashboards/ (with the
    FLEETWATCH_DASHBOARDS_TILE_URL basemap if set) and maps/ (copy into Grafana's public/maps)."""
    import json

    from dashboards.build import REGIONS_FILE, provision
    from fleetwatch.settings import Settings

    source = regions or REGIONS_FILE
    doc = json.loads(source.read_text(encoding="utf-8"))
    if doc.get("datum", "WGS-84") != "WGS-84":
        console.print(
            f"[red]error:[/] {source}: datum {doc.get('datum')!r}; the map panels draw WGS-84 "
            "positions, convert the outlines to WGS-84 first"
        )
        raise typer.Exit(2)
    settings = Settings()
    tree = provision(out, settings, source)
    console.print(f"[green]✓[/] datasource {tree.datasource}\n[green]✓[/] provider {tree.provider}")
    console.print(f"[green]✓[/] {len(tree.dashboards)} dashboards in {tree.dashboards[0].parent}")
    console.print(f"[green]✓[/] regions {tree.regions} -> copy to <grafana>/public/maps/")
    basemap = settings.dashboards_tile_url or "offline (permitted regions only)"
    console.print(
        f"basemap: {basemap}; Grafana needs FLEETWATCH_PG_DASHBOARDS_PASSWORD in its environment and "
        f"paths.provisioning = {tree.root / 'provisioning'}"
    )


@dashboards_app.command("demo")
def demo_cmd(
    vehicles: Annotated[int, typer.Option(help="Fleet size (3/4 Nanjing, 1/4 Zhenjiang).", min=1)] = 200,
    duration: Annotated[str, typer.Option(help="Simulated span, e.g. 1d, 8h.")] = "1d",
    start: Annotated[
        str | None, typer.Option(help="Simulated start, RFC 3339 [default: a recent working day].")
    ] = None,
    mix: Annotated[float, typer.Option(help="Share of Nanjing vehicles running a violating scenario.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 1,
) -> None:
    """Fill the database with a simulated fleet through detection, Kafka and the sink; rebuild kpi_daily."""
    from dashboards.demo import load
    from fleetwatch.settings import Settings
    from simulator._dataset import build_fleet
    from simulator.cli import parse_duration
    from store.db import connect
    from store.rollups import refresh_kpi_daily

    begin = datetime.fromisoformat(start) if start else None
    with console.status(f"simulating {vehicles:,} vehicles for {duration}"):
        ds = build_fleet(vehicles, seed, begin, parse_duration(duration), mix)
    settings = Settings()
    result = load(settings, ds, tag=f"{seed}-{int(datetime.now(UTC).timestamp())}", progress=console.print)
    first = min(r.samples[0].t for r in ds.runs if r.samples)
    last = max(r.samples[-1].t for r in ds.runs if r.samples)
    with connect(settings) as conn:
        rollup = refresh_kpi_daily(
            conn,
            datetime.fromtimestamp(first, UTC).date() - timedelta(days=1),
            datetime.fromtimestamp(last, UTC).date() + timedelta(days=1),
        )
    console.print(
        f"kpi_daily: {rollup.rows:,} rows; stored {result.stored}; dead letters {result.dead_letters}"
    )
    console.print(
        f"data spans {datetime.fromtimestamp(first, UTC):%Y-%m-%d %H:%M} .. "
        f"{datetime.fromtimestamp(last, UTC):%Y-%m-%d %H:%M} UTC: set the dashboards' time range there"
    )
