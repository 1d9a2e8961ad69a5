"""`fleetwatch worker` (run the stream worker) and `fleetwatch orders add FILE.jsonl`."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fleetwatch import topics

console = Console(stderr=True)
orders_app = typer.Typer(help="Dispatch orders (派车单) on the orders topic.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.add_typer(orders_app, name="orders")


def worker(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="rules.yaml (zone files resolve next to it).")
    ],
    name: Annotated[
        str | None, typer.Option(help="Instance name (logs, ops events) [default: host-pid].")
    ] = None,
    telemetry_topic: Annotated[str, typer.Option(help="Telemetry topic to read.")] = topics.TELEMETRY,
    orders_topic: Annotated[str, typer.Option(help="Dispatch orders topic to read.")] = topics.ORDERS,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run detection on the telemetry topic: per-vehicle state in a changelog-backed table,
    trips / alerts / vehicle_state / ops events out. Run more to share the partitions."""
    from fleetwatch.settings import Settings
    from geofence.rules import RulesError
    from geofence.zones import ZoneError
    from streams.worker.app import Worker, WorkerOptions, changelog_topic, run
    from streams.worker.engine import EngineConfig

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings()
    instance = name or f"{socket.gethostname()}-{os.getpid()}"
    engine = EngineConfig(
        worker=instance,
        live_lag_seconds=settings.worker_live_lag_seconds,
        idle_close_seconds=settings.worker_idle_close_seconds,
        vehicle_state_seconds=settings.worker_vehicle_state_seconds,
    )
    try:
        w = Worker(settings, WorkerOptions(config, instance, telemetry_topic, orders_topic, engine))
    except (RulesError, ZoneError) as exc:
        console.print(f"[red]rules error:[/] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"fleetwatch worker [{instance}]", show_header=False)
    table.add_row("Kafka", settings.kafka_bootstrap)
    table.add_row("group / app id", settings.worker_app_id)
    table.add_row("reads", f"{telemetry_topic}, {orders_topic}")
    table.add_row("state table", f"{changelog_topic(settings.worker_app_id)} (compacted changelog)")
    table.add_row("writes", ", ".join((topics.TRIPS, topics.ALERTS, topics.VEHICLE_STATE, topics.OPS)))
    table.add_row("dead letters", topics.WORKER_DLQ)
    table.add_row("rules", f"{config} (SIGHUP or a file change reloads)")
    table.add_row(
        "timer", f"every {settings.worker_timer_seconds:g} s; live lag {settings.worker_live_lag_seconds:g} s"
    )
    console.print(table)

    def summary() -> None:
        s = w.stats
        out = Table(title="worker totals")
        out.add_column("what")
        out.add_column("count", justify="right")
        for key, value in w.engine.counts.items():
            out.add_row(key, f"{value:,}")
        out.add_row("batches", f"{s.batches:,}")
        out.add_row(
            "consume loop, s",
            f"processing {s.processing_s:,.1f}; waiting for records {s.waiting_for_records_s:,.1f}, "
            f"for the batch's writes {s.waiting_for_writes_s:,.1f}",
        )
        out.add_row("state writes", f"{s.state_writes:,} ({s.state_bytes:,} bytes)")
        console.print(out)

    run(w, summary)


@orders_app.command("add")
def orders_add(
    file: Annotated[Path, typer.Argument(help="Dispatch orders, one JSON object per line.")],
    topic: Annotated[str, typer.Option(help="Orders topic.")] = topics.ORDERS,
) -> None:
    """Validate every order, then publish them keyed by vehicle_id (nothing is sent if any is bad)."""
    from fleetwatch.kafka_io import make_producer
    from fleetwatch.records import ContractError, parse_order
    from fleetwatch.settings import Settings

    orders = []
    errors = []
    for no, line in enumerate(file.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            orders.append(parse_order(line))
        except ContractError as exc:
            errors.append((no, exc))
    if errors:
        bad = Table(title=f"{file}: {len(errors)} bad order(s); nothing sent")
        for col in ("line", "code", "field", "reason"):
            bad.add_column(col)
        for no, error in errors:
            bad.add_row(str(no), error.code, error.field or "-", str(error))
        console.print(bad)
        raise typer.Exit(2)
    producer = make_producer(Settings(), client_id="fleetwatch-orders")
    try:
        for order in orders:
            producer.send(topic, key=order.vehicle_id.encode(), value=order.to_json())
        producer.flush(60)
    finally:
        producer.close()
    vehicles = len({o.vehicle_id for o in orders})
    approved = sum(1 for o in orders if o.status.value == "approved")
    console.print(f"sent {len(orders)} order(s) for {vehicles} vehicle(s) to {topic} ({approved} approved)")
