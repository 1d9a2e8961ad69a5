"""`fleetwatch devices ...`: add (from a CSV), list and remove registered terminals."""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fleetwatch import topics
from fleetwatch.settings import Settings
from registry import provision
from registry.entries import RegistryInputError, read_devices_csv
from registry.mosquitto import AccountsError

console = Console(width=None if sys.stdout.isatty() else 150)
devices_app = typer.Typer(
    help="The device registry: terminals, their vehicles and MQTT accounts.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(devices_app, name="devices")


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    return typer.Exit(1)


def write_credentials(path: Path, rows: list[tuple[str, str]]) -> None:
    """device_id,password for flashing terminals; created 0600 (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["device_id", "password"])
        writer.writerows(rows)


@devices_app.command("add")
def add(
    file: Annotated[Path, typer.Argument(
        help="CSV: device_id,vehicle_id,org[,depot][,password] (header required).",
        exists=True, dir_okay=False)],
    credentials: Annotated[Path | None, typer.Option(
        help="Write device_id,password of the devices given a generated password (mode 0600).")] = None,
    mqtt: Annotated[bool, typer.Option(
        help="Create MQTT accounts; --no-mqtt for JT/T 808 terminals (they use the gateway's auth code).")]
    = True,
) -> None:  # fmt: skip
    """Register devices: database rows, the registry topic, and each device's MQTT account."""
    settings = Settings()
    started = time.monotonic()
    try:
        entries = read_devices_csv(file)
        done = provision.register(settings, entries, mqtt_accounts=mqtt)
    except (RegistryInputError, AccountsError, RuntimeError) as exc:
        raise _fail(exc) from None
    table = Table(title=f"registered from {file}", show_header=False)
    table.add_row("devices", f"{done.devices:,}")
    table.add_row("vehicles", f"{done.vehicles:,}")
    table.add_row("registry topic", f"{topics.REGISTRY}: {done.devices:,} record(s)")
    table.add_row(
        "MQTT accounts", f"{len(done.credentials):,} ({len(done.generated):,} with a generated password)"
    )
    table.add_row("seconds", f"{time.monotonic() - started:.1f}")
    console.print(table)
    generated = [(d, p) for d, p in done.credentials if d in done.generated]
    if generated and credentials is not None:
        write_credentials(credentials, generated)
        console.print(
            f"generated passwords of {len(generated):,} device(s) written to {credentials} (mode 0600)"
        )
    elif generated:
        console.print(
            f"{len(generated):,} password(s) generated; run again with --credentials FILE to write "
            "them for flashing the terminals (re-running is harmless: they stay the same)"
        )


@devices_app.command("list")
def list_cmd(
    org: Annotated[str | None, typer.Option(help="Only this org and everything under it.")] = None,
) -> None:
    """Every registered device with its vehicle and org."""
    try:
        rows = provision.list_devices(Settings(), org)
    except RuntimeError as exc:
        raise _fail(exc) from None
    table = Table(title=f"devices ({len(rows):,})")
    for column in ("device", "vehicle", "org", "org name", "depot", "updated"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.device_id,
            r.vehicle_id,
            r.org,
            r.org_name,
            r.depot or "-",
            r.updated_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@devices_app.command("remove")
def remove_cmd(
    device_ids: Annotated[list[str], typer.Argument(help="Device ids to unregister.")],
) -> None:
    """Unregister devices: rows, a tombstone on the registry topic, their MQTT accounts (vehicles stay)."""
    try:
        removed = provision.remove(Settings(), device_ids)
    except (RegistryInputError, AccountsError, RuntimeError) as exc:
        raise _fail(exc) from None
    unknown = sorted(set(device_ids) - set(removed))
    console.print(
        f"[green]✓[/] removed {len(removed)} device(s)"
        + (f"; not registered: {', '.join(unknown)}" if unknown else "")
    )
