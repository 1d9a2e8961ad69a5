"""`fleetwatch stack ...`: up, down, status, logs and smoke (devices: `fleetwatch devices`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fleetwatch.settings import Settings

from . import SERVICES, ServiceStatus, StackError, down, ensure_up, log_path, status
from ._common import tail

# Piped output (CI logs) would otherwise be cut to 80 columns and lose the paths.
console = Console(width=None if sys.stdout.isatty() else 150)
stack_app = typer.Typer(help="The local stack: Mosquitto, Kafka, PostgreSQL + TimescaleDB.",
                        no_args_is_help=True)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    log = getattr(exc, "log", None)
    if isinstance(log, Path):
        for line in tail(log, 15):
            console.print(f"  [dim]{line}[/]", markup=False, highlight=False)
    return typer.Exit(1)


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _status_table(rows: list[ServiceStatus]) -> Table:
    table = Table(title="fleetwatch stack")
    for column in ("service", "state", "port", "version", "data dir", "log"):
        table.add_column(column, overflow="fold")
    colours = {"running": "green", "stopped": "yellow", "foreign": "red"}
    for row in rows:
        pid = f" (pid {row.pid})" if row.pid else ""
        state = f"[{colours.get(row.state, 'white')}]{row.state}[/]{pid}"
        table.add_row(row.service, state, str(row.port), row.version, _short(row.data_dir), _short(row.log))
    return table


@stack_app.command()
def up() -> None:
    """Install what is missing, start every service, health-check it (idempotent)."""
    started = time.monotonic()
    settings = Settings()
    try:
        rows = ensure_up(settings, console)
    except StackError as exc:
        raise _fail(exc) from None
    console.print(_status_table(rows))
    console.print(f"stack up in {time.monotonic() - started:.1f} s")


@stack_app.command("down")
def down_cmd(
    services: Annotated[
        list[str] | None, typer.Argument(help=f"only these ({', '.join(SERVICES)}); default all")
    ] = None,
) -> None:
    """Stop services cleanly (all by default); data stays in the stack directory."""
    try:
        down(Settings(), console, services or SERVICES)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    except StackError as exc:
        raise _fail(exc) from None


@stack_app.command("status")
def status_cmd() -> None:
    """Each service: state, port, version, data directory and log file."""
    rows = status(Settings())
    console.print(_status_table(rows))
    if any(r.state != "running" for r in rows):
        raise typer.Exit(3)


@stack_app.command()
def logs(
    service: Annotated[str, typer.Argument(help=f"one of {', '.join(SERVICES)}, install, timescaledb-build")]
    = "all",
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many lines per log")] = 40,
) -> None:
    """Print the end of a service's log (or of every service's log)."""
    settings = Settings()
    names = SERVICES if service == "all" else (service,)
    for name in names:
        try:
            path = log_path(settings, name)
        except ValueError as exc:
            raise _fail(exc) from None
        console.rule(f"{name}: {path}")
        for line in tail(path, lines):
            console.print(line, markup=False, highlight=False)


@stack_app.command()
def smoke() -> None:
    """One round trip through each service, printing their versions."""
    from ._smoke import run_smoke

    try:
        run_smoke(Settings(), console)
    except StackError as exc:
        raise _fail(exc) from None


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
