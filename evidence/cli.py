"""`fleetwatch evidence`: a vehicle's (or a place's) evidence bundle for a time window."""

from __future__ import annotations

import getpass
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from evidence.build import EvidenceError, build_evidence, parse_local_time, parse_place
from evidence.query import VehicleEvidence
from evidence.report import Bundle
from fleetwatch.settings import Settings
from geofence import Rules, RulesError, ZoneError, load_rules
from notify.cli import owner_connection

console = Console(width=None if sys.stdout.isatty() else 150)


def register(app: typer.Typer) -> None:
    app.command("evidence")(evidence_cmd)


def load_rules_or_exit(path: Path | None) -> Rules | None:
    if path is None:
        return None

    try:
        return load_rules(path)
    except (RulesError, ZoneError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def print_bundle(bundle: Bundle, vehicles: list[VehicleEvidence]) -> None:
    table = Table(title=f"evidence: {bundle.directory}")
    for name in ("vehicle", "org", "closest m", "fixes", "stops", "trips", "alerts", "orders"):
        table.add_column(name)
    for v in vehicles:
        closest = f"{v.closest_m:.0f}" if v.closest_m is not None else "-"
        table.add_row(
            v.vehicle_id,
            v.org,
            closest,
            str(len(v.track)),
            str(len(v.stops)),
            str(len(v.trips)),
            str(len(v.alerts)),
            str(len(v.orders)),
        )
    console.print(table)
    console.print(f"report {bundle.html}\nmanifest {bundle.manifest} (sha256 {bundle.manifest_sha256})")


def evidence_cmd(
    start: Annotated[
        str, typer.Option("--from", help="Window start (local time unless an offset is given).")
    ],
    end: Annotated[str, typer.Option("--to", help="Window end.")],
    plate: Annotated[str | None, typer.Option(help="The vehicle (plate), e.g. 苏A12345.")] = None,
    near: Annotated[str | None, typer.Option(help="LAT,LON: every vehicle that came this close.")] = None,
    radius: Annotated[float, typer.Option(help="Metres around --near.")] = 200.0,
    datum: Annotated[
        str, typer.Option(help="Datum of --near: WGS-84 or GCJ-02 (Chinese web maps).")
    ] = "WGS-84",
    rules: Annotated[
        Path | None, typer.Option(help="rules.yaml: draw the permitted region and zones.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory [default: <evidence_dir>/<stamp>].")
    ] = None,
) -> None:
    """HTML report (map, timeline, trips, alerts, orders) + GeoJSON + GPX + checksum manifest."""
    settings = Settings()
    tz = settings.local_timezone
    try:
        t0, t1 = parse_local_time(start, "--from", tz), parse_local_time(end, "--to", tz)
        place = parse_place(near, datum, "--near") if near else None
    except EvidenceError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    world = load_rules_or_exit(rules)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    directory = out or settings.evidence_dir / f"{stamp}-{plate or 'near'}"
    with owner_connection(settings) as conn:
        try:
            bundle, vehicles = build_evidence(
                conn,
                out_dir=directory,
                start=t0,
                end=t1,
                timezone=tz,
                generated_by=getpass.getuser(),
                plate=plate,
                near=place,
                radius_m=radius,
                rules=world,
            )
        except EvidenceError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
    print_bundle(bundle, vehicles)
