"""`fleetwatch notify run | log`: deliver alerts to fleet managers and show the delivery log."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, cast

import psycopg
import typer
from kafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from fleetwatch import topics
from fleetwatch.settings import Settings
from notify.config import RoutingError, load_routing
from store.db import connect

console = Console(width=None if sys.stdout.isatty() else 150)
notify_app = typer.Typer(
    help="Alerts to fleet managers (webhook, DingTalk, WeCom, e-mail, MQTT).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify")


def owner_connection(settings: Settings) -> psycopg.Connection[tuple[Any, ...]]:
    """The owner's connection (the workflow writes alerts and events), or a clear error and exit 1."""
    try:
        return cast("psycopg.Connection[tuple[Any, ...]]", connect(settings))
    except (psycopg.OperationalError, RuntimeError) as exc:
        console.print(f"[bold red]error:[/] cannot connect to the database: {exc}")
        raise typer.Exit(1) from None


@notify_app.command("run")
def run_cmd(
    routes: Annotated[
        Path | None, typer.Option(help="Routing YAML [default: FLEETWATCH_NOTIFY_ROUTES].")
    ] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Exit after this many idle seconds.")] = None,
    topic: Annotated[str, typer.Option(help="The alerts topic.")] = topics.ALERTS,
) -> None:
    """Consume the alerts topic, queue one delivery per (alert, revision, route), send, escalate."""
    from notify.runner import Notifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    try:
        routing = load_routing(routes or settings.notify_routes)
    except RoutingError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print(f"notify: {len(routing.routes)} route(s), {len(routing.channels)} channel(s)")
    notifier = Notifier(settings, routing)
    while True:
        try:
            with cast("psycopg.Connection[tuple[Any, ...]]", connect(settings)) as conn:
                stats = notifier.run(conn, topic=topic, stop=stop, idle_exit_s=idle_exit)
            break
        except (psycopg.OperationalError, KafkaError) as exc:
            # The database or Kafka went away (a broker restart ends the consumer's poll with a
            # connection error): nothing was committed to Kafka past the last stored rows, so
            # starting over re-reads what was in flight and the delivery log drops the repeats.
            what = "database" if isinstance(exc, psycopg.Error) else "Kafka"
            console.print(f"[yellow]{what} unavailable ({exc}); retrying in 5 s[/]")
            if stop.wait(5.0):
                stats = notifier.stats
                break
    table = Table(title="notify")
    for name in ("records", "refused", "queued", "sent", "retried", "failed", "escalated"):
        table.add_column(name, justify="right")
    table.add_row(
        *(
            str(v)
            for v in (
                stats.records,
                stats.rejected,
                stats.queued,
                stats.sent,
                stats.retried,
                stats.failed,
                stats.escalated,
            )
        )
    )
    console.print(table)


@notify_app.command("log")
def log_cmd(
    alert: Annotated[str | None, typer.Option(help="Only this alert's deliveries.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N rows.")] = 50,
) -> None:
    """The delivery log: attempts, status and last error of each (alert, revision, route)."""
    with owner_connection(Settings()) as conn:
        rows = conn.execute(
            "SELECT delivery_id, alert_id, revision, route, purpose, severity, status, attempts, created_at,"
            " sent_at, last_error FROM notify_deliveries WHERE %s::text IS NULL OR alert_id = %s"
            " ORDER BY delivery_id DESC LIMIT %s",
            (alert, alert, limit),
        ).fetchall()
    table = Table(title="deliveries")
    for name in (
        "id",
        "alert",
        "rev",
        "route",
        "purpose",
        "sev",
        "status",
        "tries",
        "created",
        "sent",
        "error",
    ):
        table.add_column(name)
    colours = {"sent": "green", "pending": "yellow", "held": "blue", "failed": "red", "cancelled": "dim"}
    for r in rows:
        table.add_row(
            str(r[0]),
            str(r[1])[:12],
            str(r[2]),
            str(r[3]),
            str(r[4]),
            str(r[5]),
            f"[{colours.get(str(r[6]), 'white')}]{r[6]}[/]",
            str(r[7]),
            r[8].isoformat(timespec="seconds"),
            r[9].isoformat(timespec="seconds") if r[9] else "-",
            str(r[10] or "")[:60],
        )
    console.print(table)
