"""`fleetwatch alerts list|show|ack|close|reopen|escalate` and `fleetwatch complaint add|list`."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from evidence.build import EvidenceError, parse_local_time, parse_place
from evidence.cli import load_rules_or_exit, print_bundle
from fleetwatch.settings import Settings
from notify.cli import owner_connection
from workflow.alerts import WorkflowError, change_status, resolve_id

console = Console(width=None if sys.stdout.isatty() else 160)
alerts_app = typer.Typer(help="Fleet managers' alert workflow (3 days to handle each).", no_args_is_help=True)
complaint_app = typer.Typer(help="Citizens' complaints and their evidence.", no_args_is_help=True)
STATUS_COLOUR = {"open": "yellow", "acknowledged": "cyan", "closed": "green", "retracted": "dim"}
By = Annotated[str, typer.Option("--by", help="Who makes the change [default: the login name].")]


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(complaint_app, name="complaint")


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(code)


def _local(ts: datetime | None) -> str:
    tz = ZoneInfo(Settings().local_timezone)
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M") if ts else "-"


@alerts_app.command("list")
def list_cmd(
    org: Annotated[str | None, typer.Option(help="This org and everything under it.")] = None,
    status: Annotated[str | None, typer.Option(help="open, acknowledged, closed or retracted.")] = None,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only unhandled alerts past their due time.")
    ] = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """Alerts with their due time; overdue ones in red."""
    with owner_connection(Settings()) as conn:
        rows = conn.execute(
            "WITH RECURSIVE tree (org_id) AS (SELECT %(org)s::text UNION"
            " SELECT o.org_id FROM orgs o JOIN tree t ON o.parent_id = t.org_id)"
            " SELECT a.alert_id, a.type, a.severity, a.vehicle_id, a.org, a.start_at, a.raised_at, a.due_at,"
            " a.status, EXISTS (SELECT 1 FROM alert_events e WHERE e.alert_id = a.alert_id"
            " AND e.kind = 'escalated') FROM alerts a"
            " WHERE (%(org)s::text IS NULL OR a.org IN (SELECT org_id FROM tree))"
            " AND (%(status)s::text IS NULL OR a.status = %(status)s)"
            " AND (NOT %(overdue)s OR (a.status IN ('open', 'acknowledged') AND a.due_at < now()))"
            " ORDER BY a.raised_at DESC LIMIT %(limit)s",
            {"org": org, "status": status, "overdue": overdue, "limit": limit},
        ).fetchall()
    now = datetime.now(UTC)
    table = Table(title=f"alerts ({len(rows)})")
    for name in ("id", "type", "sev", "vehicle", "org", "start", "due", "status", "escalated"):
        table.add_column(name)
    for alert_id, type_, sev, vehicle, org_, start, _raised, due, st, escalated in rows:
        late = st in ("open", "acknowledged") and due < now
        table.add_row(
            alert_id[:12],
            type_,
            f"[{'red' if sev == 'red' else 'yellow'}]{sev}[/]",
            vehicle,
            org_,
            _local(start),
            f"[bold red]{_local(due)} overdue[/]" if late else _local(due),
            f"[{STATUS_COLOUR.get(st, 'white')}]{st}[/]",
            "yes" if escalated else "",
        )
    console.print(table)


@alerts_app.command("show")
def show_cmd(alert_id: Annotated[str, typer.Argument(help="Alert id (a unique prefix will do).")]) -> None:
    """One alert's facts and its whole history (who did what, when, why)."""
    with owner_connection(Settings()) as conn:
        try:
            full = resolve_id(conn, alert_id)
        except WorkflowError as exc:
            raise _fail(exc) from None
        cur = conn.execute("SELECT * FROM alerts WHERE alert_id = %s", (full,))
        names = [d.name for d in cur.description or ()]
        facts = dict(zip(names, cur.fetchone() or (), strict=True))
        events = conn.execute(
            "SELECT at, actor, kind, from_status, to_status, reason, revision FROM alert_events"
            " WHERE alert_id = %s ORDER BY at, event_id",
            (full,),
        ).fetchall()
        deliveries = conn.execute(
            "SELECT route, purpose, revision, status, attempts, sent_at FROM notify_deliveries"
            " WHERE alert_id = %s ORDER BY delivery_id",
            (full,),
        ).fetchall()
    table = Table(title=f"alert {full}", show_header=False)
    for key, value in facts.items():
        table.add_row(key, _local(value) if isinstance(value, datetime) else str(value))
    console.print(table)
    history = Table(title="history")
    for name in ("at", "who", "what", "from", "to", "why", "rev"):
        history.add_column(name)
    for at, actor, kind, src, dst, reason, rev in events:
        history.add_row(
            _local(at), actor, kind, src or "-", dst, reason or "", "" if rev is None else str(rev)
        )
    console.print(history)
    sent = Table(title="notifications")
    for name in ("route", "purpose", "rev", "status", "tries", "sent"):
        sent.add_column(name)
    for route, purpose, rev, st, tries, at in deliveries:
        sent.add_row(route, purpose, str(rev), st, str(tries), _local(at))
    console.print(sent)


def _change(alert_id: str, action: str, by: str | None, reason: str | None) -> None:
    with owner_connection(Settings()) as conn:
        try:
            change = change_status(conn, resolve_id(conn, alert_id), action, by or getpass.getuser(), reason)
        except WorkflowError as exc:
            raise _fail(exc) from None
    console.print(
        f"[green]✓[/] {change.alert_id[:12]}: {change.from_status} → {change.to_status} "
        f"by {change.actor} at {_local(change.at)}"
    )


@alerts_app.command("ack")
def ack_cmd(alert_id: str, by: By = "", reason: Annotated[str | None, typer.Option()] = None) -> None:
    """Acknowledge: someone is handling it."""
    _change(alert_id, "acknowledged", by, reason)


@alerts_app.command("close")
def close_cmd(
    alert_id: str, reason: Annotated[str, typer.Option(help="What was found and done.")], by: By = ""
) -> None:
    """Close with the finding (e.g. 'approved order filed late', 'driver disciplined')."""
    _change(alert_id, "closed", by, reason)


@alerts_app.command("reopen")
def reopen_cmd(
    alert_id: str, reason: Annotated[str, typer.Option(help="Why it is open again.")], by: By = ""
) -> None:
    """Reopen a closed alert."""
    _change(alert_id, "reopened", by, reason)


@alerts_app.command("escalate")
def escalate_cmd(routes: Annotated[Path | None, typer.Option(help="Routing YAML.")] = None) -> None:
    """Escalate overdue alerts once to the org above now (`fleetwatch notify run` also does it)."""
    from notify.config import RoutingError, load_routing
    from notify.escalation import escalate_overdue

    settings = Settings()
    try:
        routing = load_routing(routes or settings.notify_routes)
    except RoutingError as exc:
        raise _fail(exc, 2) from None
    with owner_connection(settings) as conn:
        done = escalate_overdue(conn, routing, datetime.now(UTC), ZoneInfo(settings.local_timezone))
    table = Table(title=f"escalated {len(done)}")
    for name in ("alert", "org", "to", "deliveries queued"):
        table.add_column(name)
    for e in done:
        table.add_row(e.alert_id[:12], e.org, e.parent_org or "(no org above)", str(e.deliveries))
    console.print(table)


@complaint_app.command("add")
def complaint_add(
    plate: Annotated[str, typer.Option(help="The vehicle the caller saw, e.g. 苏A12345.")],
    time: Annotated[str, typer.Option("--time", help="When it was seen (local time unless an offset).")],
    place: Annotated[str, typer.Option(help="LAT,LON where it was seen.")],
    text: Annotated[str, typer.Option(help="What the caller reported.")],
    datum: Annotated[
        str, typer.Option(help="Datum of --place: WGS-84 or GCJ-02 (AMap, Tencent).")
    ] = "WGS-84",
    window_hours: Annotated[float, typer.Option(help="Evidence window either side of --time.")] = 2.0,
    radius: Annotated[float, typer.Option(help="Metres around --place for the evidence.")] = 200.0,
    rules: Annotated[Path | None, typer.Option(help="rules.yaml to draw region and zones.")] = None,
    by: By = "",
) -> None:
    """Open a complaint case (due in 3 days) and build its evidence bundle."""
    from workflow.complaints import add_complaint

    settings = Settings()
    try:
        observed = parse_local_time(time, "--time", settings.local_timezone)
        given = parse_place(place, "WGS-84", "--place")
        lat, lon = parse_place(place, datum, "--place")
    except EvidenceError as exc:
        raise _fail(exc, 2) from None
    world = load_rules_or_exit(rules)
    with owner_connection(settings) as conn:
        try:
            c = add_complaint(
                conn,
                plate=plate,
                observed_at=observed,
                lat=lat,
                lon=lon,
                given_datum="GCJ-02" if "GCJ" in datum.upper() else "WGS-84",
                given=given,
                text=text,
                created_by=by or getpass.getuser(),
                due_days=settings.case_due_days,
                evidence_root=settings.evidence_dir,
                window=timedelta(hours=window_hours),
                radius_m=radius,
                timezone=settings.local_timezone,
                rules=world,
            )
        except (WorkflowError, EvidenceError) as exc:
            raise _fail(exc) from None
    console.print(
        f"[green]✓[/] complaint #{c.complaint_id} on {c.vehicle_id} ({c.org}) due {_local(c.due_at)}; "
        f"place WGS-84 {c.lat:.6f},{c.lon:.6f}"
    )
    print_bundle(c.bundle, c.vehicles)


@complaint_app.command("list")
def complaint_list(open_only: Annotated[bool, typer.Option("--open")] = False) -> None:
    """Complaints with due time and evidence."""
    with owner_connection(Settings()) as conn:
        rows = conn.execute(
            "SELECT complaint_id, vehicle_id, org, observed_at, status, due_at, evidence_path,"
            " evidence_sha256,"
            " left(text, 40) FROM complaints WHERE NOT %s OR status = 'open' ORDER BY complaint_id DESC",
            (open_only,),
        ).fetchall()
    table = Table(title=f"complaints ({len(rows)})")
    for name in ("#", "vehicle", "org", "seen", "status", "due", "evidence", "manifest sha256", "text"):
        table.add_column(name)
    for cid, vehicle, org, seen, st, due, path, digest, text in rows:
        table.add_row(
            str(cid), vehicle, org, _local(seen), st, _local(due), path or "-", (digest or "")[:16], text
        )
    console.print(table)
