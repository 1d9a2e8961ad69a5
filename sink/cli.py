"""`fleetwatch sink`: consume the pipeline's topics into TimescaleDB until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("sink")(sink)


def sink(
    table: Annotated[
        list[str] | None,
        typer.Option("--table", "-t", help="Only these tables (repeatable) [default: every sink]."),
    ] = None,
    topic: Annotated[
        list[str] | None, typer.Option(help="TABLE=TOPIC: read a table's records from another topic.")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Kafka consumer group [default: FLEETWATCH_SINK_GROUP].")
    ] = None,
    dlq_topic: Annotated[
        str | None, typer.Option(help="Dead-letter topic [default: fleetwatch.sink.dlq.v1].")
    ] = None,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds without a record (backfills, tests).")
    ] = None,
    log_interval: Annotated[float, typer.Option(help="Seconds between progress lines (0: none).")] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Store telemetry, orders, trips, alerts and vehicle state in TimescaleDB (batched COPY + merge;
    offsets committed only after the database commit; refused records to the dead-letter topic)."""
    from fleetwatch import topics
    from fleetwatch.settings import Settings
    from sink.registry import make_sinks
    from sink.runner import DatabaseAway, SinkRunner

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("kafka").setLevel(logging.INFO if verbose else logging.ERROR)
    overrides: dict[str, str] = {}
    for spec in topic or []:
        name, sep, value = spec.partition("=")
        if not sep or not value:
            console.print(f"[red]--topic {spec!r}: expected TABLE=TOPIC[/]")
            raise typer.Exit(2)
        overrides[name] = value
    try:
        sinks = make_sinks(table, overrides)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settings = Settings()
    runner = SinkRunner(settings, sinks, group=group, dlq_topic=dlq_topic or topics.SINK_DLQ, stop=stop)
    console.print(
        f"sink running: group {runner.group}; " + ", ".join(f"{s.topic} -> {s.table}" for s in sinks),
        highlight=False,
    )
    started = time.monotonic()
    try:
        stats = runner.run(idle_exit_s=idle_exit, progress_every_s=log_interval)
    except DatabaseAway as exc:
        console.print(f"[yellow]stopped while the database was away[/] (batch not committed): {exc}")
        raise typer.Exit(1) from None
    took = time.monotonic() - started
    summary = Table(title=f"sink: {stats.records:,} records in {stats.batches:,} batches, {took:.1f} s "
                    f"({stats.records_per_s:,.0f} records/s while busy)")
    for column in ("table", "consumed", "rows changed"):
        summary.add_column(column, justify="right" if column != "table" else "left")
    for s in sinks:
        summary.add_row(s.table, f"{stats.consumed[s.table]:,}", f"{stats.changed[s.table]:,}")
    console.print(summary)
    console.print(
        f"dead letters: {stats.dead_lettered} {dict(stats.rejected) or ''}; database outages: "
        f"{stats.db_outages} ({stats.db_wait_s:.1f} s paused); commit failures: {stats.commit_failures}"
    )
