"""`fleetwatch db ...`: migrate, status, maintain (retention, rollups), org accounts and registry import."""

from __future__ import annotations

import getpass
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from fleetwatch.settings import Settings
from store.db import connect
from store.maintain import drop_expired_positions
from store.migrate import MigrationError, migrate, migration_status
from store.roles import AccountError, add_org_account, ensure_service_logins, list_org_accounts
from store.rollups import recent_days, refresh_kpi_daily

console = Console(width=None if sys.stdout.isatty() else 150)
db_app = typer.Typer(
    help="The product database: migrations, retention, accounts, registry.", no_args_is_help=True
)
account_app = typer.Typer(
    help="Per-city / per-unit read-only accounts (row-level security).", no_args_is_help=True
)
db_app.add_typer(account_app, name="account")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


def _owner() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return connect(Settings())
    except (psycopg.OperationalError, RuntimeError) as exc:
        console.print(f"[bold red]error:[/] cannot connect to the database as its owner: {exc}")
        raise typer.Exit(1) from None


@db_app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending migrations (refusing an edited history), then provision the service logins."""
    started = time.monotonic()
    settings = Settings()
    with _owner() as conn:
        try:
            applied = migrate(conn)
        except MigrationError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None
        logins = ensure_service_logins(conn, settings)
    for m in applied:
        console.print(f"[green]✓[/] applied {m.label}")
    console.print(
        f"{len(applied)} migration(s) applied, logins {', '.join(logins)} provisioned "
        f"in {time.monotonic() - started:.1f} s"
    )


@db_app.command("status")
def status_cmd() -> None:
    """Every migration with its state (applied / pending / edited / missing) and the table sizes."""
    with _owner() as conn:
        states = migration_status(conn)
        sizes = conn.execute(
            "SELECT c.relname, CASE WHEN h.hypertable_name IS NOT NULL "
            "THEN (SELECT count(*) FROM timescaledb_information.chunks k "
            "WHERE k.hypertable_name = c.relname) "
            "END, c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN timescaledb_information.hypertables h ON h.hypertable_name = c.relname "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
        ).fetchall()
    table = Table(title="migrations")
    for column in ("version", "name", "state", "applied at", "checksum"):
        table.add_column(column)
    colours = {"applied": "green", "pending": "yellow", "edited": "red", "missing": "red"}
    for s in states:
        table.add_row(
            f"{s.version:04d}",
            s.name,
            f"[{colours[s.state]}]{s.state}[/]",
            s.applied_at.isoformat(timespec="seconds") if s.applied_at else "-",
            s.checksum[:12],
        )
    console.print(table)
    tables = Table(title="tables (row estimates)")
    for column in ("table", "chunks", "rows ≈"):
        tables.add_column(column)
    for name, chunks, rows in sizes:
        tables.add_row(str(name), "-" if chunks is None else str(chunks), str(max(int(str(rows)), 0)))
    console.print(tables)
    if any(s.state != "applied" for s in states):
        raise typer.Exit(3)


@db_app.command("maintain")
def maintain_cmd(
    retention_days: Annotated[
        int | None,
        typer.Option(help="Keep positions this many days [default: FLEETWATCH_POSITIONS_RETENTION_DAYS]."),
    ] = None,
    rollup_days: Annotated[
        int, typer.Option(help="Rebuild the dashboards' kpi_daily for this many days up to today.", min=1)
    ] = 3,
    rollup_from: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Backfill kpi_daily from this day (to --rollup-to)."),
    ] = None,
    rollup_to: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day of a backfill [default: today].")
    ] = None,
) -> None:
    """Drop positions chunks older than the retention and rebuild recent KPI rollups (run it
    hourly or daily, e.g. from cron)."""
    if rollup_from is not None and rollup_to is not None and rollup_to < rollup_from:
        console.print(f"[bold red]error:[/] --rollup-to {rollup_to:%Y-%m-%d} is before --rollup-from")
        raise typer.Exit(2)
    settings = Settings()
    days = retention_days if retention_days is not None else settings.positions_retention_days
    with _owner() as conn:
        result = drop_expired_positions(conn, days)
        first, last = recent_days(conn, rollup_days)
        if rollup_from is not None:
            first, last = rollup_from.date(), rollup_to.date() if rollup_to is not None else last
        try:
            rollup = refresh_kpi_daily(conn, first, last)
        except ValueError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
    console.print(
        f"positions: kept {days} days (fixes from {result.older_than.isoformat(timespec='seconds')} on); "
        f"dropped {len(result.dropped_chunks)} chunk(s); scoped roles' privileges revoked on "
        f"{result.sealed_chunks} remaining chunk(s)"
    )
    for chunk in result.dropped_chunks:
        console.print(f"  [dim]{chunk}[/]")
    console.print(
        f"kpi_daily: rebuilt {rollup.first_day} .. {rollup.last_day}: {rollup.rows:,} (day, org) rows"
    )


@account_app.command("add")
def account_add(
    role: Annotated[str, typer.Argument(help="Role (login) name, e.g. nanjing_supervisor.")],
    org: Annotated[str, typer.Option(help="Org id whose subtree the account sees, e.g. js.nj.")],
    password_env: Annotated[
        str | None, typer.Option(help="Read the password from this environment variable (else prompt).")
    ] = None,
    no_login: Annotated[bool, typer.Option("--no-login", help="A group role without a password.")] = False,
) -> None:
    """Create or update a read-only account that sees only one org's subtree in every table."""
    password: str | None = None
    if not no_login:
        password = os.environ.get(password_env) if password_env else getpass.getpass(f"password for {role}: ")
        if not password:
            console.print(f"[bold red]error:[/] no password (environment variable {password_env!r} is empty)")
            raise typer.Exit(2)
    with _owner() as conn:
        try:
            add_org_account(conn, role, org, password)
        except AccountError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(1) from None
    console.print(f"[green]✓[/] {role} sees org {org} and everything under it")


@account_app.command("list")
def account_list() -> None:
    """Every scoped account and its org."""
    with _owner() as conn:
        rows = list_org_accounts(conn)
    table = Table(title="org accounts")
    for column in ("role", "org", "login"):
        table.add_column(column)
    for role, org, login in rows:
        table.add_row(role, org, "yes" if login else "no")
    console.print(table)


@db_app.command("import-registry")
def import_registry(
    rules: Annotated[
        Path,
        typer.Argument(
            help="rules.yaml (org tree and vehicles, docs/world-format.md).", exists=True, dir_okay=False
        ),
    ],
    credentials: Annotated[
        Path | None, typer.Option(help="Write device_id,password of every device (mode 0600) for flashing.")
    ] = None,
) -> None:
    """Register the org tree, vehicles and their devices from a rules.yaml (the `fleetwatch devices add`
    path: database rows, the registry topic and the devices' MQTT accounts, passwords generated)."""
    from geofence import RulesError, ZoneError, load_rules
    from registry import DeviceEntry, RegistryInputError, register
    from registry.cli import write_credentials
    from registry.mosquitto import AccountsError
    from store.registry import OrgRow

    try:
        world = load_rules(rules)
    except (RulesError, ZoneError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    try:
        done = register(
            Settings(),
            [DeviceEntry(v.device_id, v.vehicle_id, v.org, v.depot) for v in world.vehicles.values()],
            [OrgRow(o.id, o.name, o.parent) for o in world.orgs.values()],
        )
    except (RegistryInputError, AccountsError, RuntimeError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"[green]✓[/] registry: {done.orgs} orgs, {done.vehicles} vehicles, {done.devices} devices "
        f"from {rules}"
    )
    if credentials is not None:
        write_credentials(credentials, done.credentials)
        console.print(f"device passwords written to {credentials} (mode 0600)")
