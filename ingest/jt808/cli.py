"""`fleetwatch jt808`: run the JT/T 808 gateway until SIGTERM/SIGINT, then drain and print totals."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from fleetwatch import topics
from fleetwatch.settings import Settings

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("jt808")(jt808)


def jt808(
    instance: Annotated[
        str, typer.Option(help="Instance name (Kafka client id fleetwatch-jt808-<NAME>).")
    ] = "default",
    host: Annotated[str | None, typer.Option(help="Listen address [default: FLEETWATCH_JT808_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: FLEETWATCH_JT808_PORT, 6808].")] = None,
    topic: Annotated[str, typer.Option(help="Kafka topic for valid fixes.")] = topics.TELEMETRY,
    dlq_topic: Annotated[str, typer.Option(help="Kafka topic for rejected frames.")] = topics.TELEMETRY_DLQ,
    log_interval: Annotated[
        float, typer.Option(help="Seconds between counter log lines (0 disables).")
    ] = 10.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """JT/T 808 (2013/2019) TCP gateway: terminals register, authenticate and report into Kafka;
    the 0x8001 reply to a location report is sent only after Kafka has acknowledged its fixes."""
    from ingest.jt808.server import Gateway, GatewayConfig

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
    )
    logging.getLogger("kafka").setLevel(logging.INFO if verbose else logging.ERROR)
    overrides = {k: v for k, v in (("jt808_host", host), ("jt808_port", port)) if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    config = GatewayConfig(instance=instance, telemetry_topic=topic, dlq_topic=dlq_topic)

    async def run() -> Gateway:
        gateway = Gateway(settings, config)
        await gateway.start()
        table = Table(title=f"fleetwatch jt808 [{instance}]", show_header=False)
        table.add_row("listening", f"{settings.jt808_host}:{gateway.port} (TCP, JT/T 808-2013 and -2019)")
        table.add_row("Kafka", f"{settings.kafka_bootstrap}  {topic} (dead letters: {dlq_topic})")
        table.add_row("registry", f"{gateway.registry.source} ({len(gateway.registry):,} devices)")
        table.add_row("idle timeout", f"{settings.jt808_idle_timeout_s:g} s")
        table.add_row(
            "rate limit", f"{settings.jt808_frames_per_s:g} frames/s, burst {settings.jt808_burst_frames}"
        )
        console.print(table)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), timeout=log_interval if log_interval > 0 else None)
            except TimeoutError:
                logging.getLogger("fleetwatch.jt808").info(
                    "jt808[%s] connections=%d %s", instance, gateway.connections,
                    " ".join(f"{k}={v}" for k, v in gateway.summary().items()),
                )  # fmt: skip
        console.log("stopping: finishing acknowledgements")
        await gateway.stop()
        return gateway

    gateway = asyncio.run(run())
    summary = Table(title="jt808 totals")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for name, value in gateway.summary().items():
        summary.add_row(name, f"{value:,}")
    console.print(summary)
