"""`fleetwatch ingest` (run one bridge instance until SIGTERM/SIGINT) and `fleetwatch watch`."""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from fleetwatch import topics
from fleetwatch.settings import Settings
from ingest.bridge import SHARE_GROUP, Bridge, BridgeConfig

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.command("watch")(watch)


def watch(
    device: Annotated[str | None, typer.Option(help="Terminal (device_id) to follow.")] = None,
    vehicle: Annotated[str | None, typer.Option(help="Vehicle (plate) to follow, whatever its terminal.")]
    = None,
    since: Annotated[float, typer.Option(help="Also show what landed in the last SECONDS.")] = 300.0,
    duration: Annotated[
        float, typer.Option(help="Stop after SECONDS (0: until Ctrl-C); then print a summary.")
    ] = 0.0,
    rows: Annotated[int, typer.Option(min=1, help="How many recent events the live view keeps.")] = 20,
) -> None:
    """Follow one terminal live: each fix as it lands in Kafka (position, fix age, rate, gaps) or
    the dead-letter reason it got. Is my terminal working? Answered within seconds."""
    from kafka.errors import KafkaError
    from rich.live import Live

    from ingest.watch import Watch, describe, follow, render

    if (device is None) == (vehicle is None):
        console.print("[red]give exactly one of --device ID or --vehicle PLATE[/]")
        raise typer.Exit(2)
    settings = Settings()
    state = Watch(device_id=device, vehicle_id=vehicle, keep=rows)
    out = Console()
    if not out.is_terminal:
        out = Console(width=160)  # piped: keep each event on one line
    listening = f"listening on {settings.kafka_bootstrap} ({topics.TELEMETRY}, {topics.TELEMETRY_DLQ})"
    events = follow(settings, state, since_s=since)
    try:
        next(events)  # positioned on both topics
        deadline = time.monotonic() + duration if duration > 0 else float("inf")
        if out.is_terminal:
            with Live(render(state, datetime.now(UTC), listening=listening), console=out,
                      refresh_per_second=4) as live:  # fmt: skip
                for _ in events:
                    live.update(render(state, datetime.now(UTC), listening=listening))
                    if time.monotonic() > deadline:
                        break
        else:  # piped: one line per event, then the summary
            out.print(listening)
            for event in events:
                if event is not None:
                    out.print(*describe(event), sep="  ", soft_wrap=True)
                if time.monotonic() > deadline:
                    break
    except KeyboardInterrupt:
        pass
    except KafkaError as exc:
        console.print(f"[red]Kafka at {settings.kafka_bootstrap}: {exc}[/] (`fleetwatch stack status`?)")
        raise typer.Exit(1) from None
    finally:
        events.close()
    out.print(render(state, datetime.now(UTC), listening=listening).renderables[0])


def ingest(
    instance: Annotated[
        str, typer.Option(help="Instance name; the MQTT client id is fleetwatch-bridge-<NAME>.")
    ] = "default",
    receive_maximum: Annotated[
        int, typer.Option(min=1, max=65535, help="Max unacknowledged messages in flight.")
    ] = 1000,
    session_expiry: Annotated[
        int, typer.Option(min=0, help="Seconds the broker keeps this instance's session.")
    ] = 3600,
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus /metrics port (-1 disables it, 0 picks one).")
    ] = -1,
    log_interval: Annotated[
        float, typer.Option(help="Seconds between metric log lines (0 disables).")
    ] = 10.0,
    topic: Annotated[str, typer.Option(help="Kafka topic for valid fixes.")] = topics.TELEMETRY,
    dlq_topic: Annotated[str, typer.Option(help="Kafka topic for rejected messages.")] = topics.TELEMETRY_DLQ,
    share_group: Annotated[str, typer.Option(help="MQTT shared-subscription group.")] = SHARE_GROUP,
    delivery_timeout: Annotated[
        float,
        typer.Option(min=1.0, help="Seconds the producer retries a record before the bridge re-sends it."),
    ] = 120.0,
    only_device: Annotated[
        list[str] | None,
        typer.Option(help="Subscribe only to this device's topic (repeatable; canaries and tests)."),
    ] = None,
    leave: Annotated[
        bool,
        typer.Option(
            help="On shutdown, leave the group and end the session (use when removing an instance for good)."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Bridge device telemetry from MQTT to Kafka (PUBACK only after Kafka has the record)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
    )
    logging.getLogger("kafka").setLevel(logging.INFO if verbose else logging.ERROR)
    settings = Settings()
    config = BridgeConfig(
        instance=instance,
        telemetry_topic=topic,
        dlq_topic=dlq_topic,
        share_group=share_group,
        receive_maximum=receive_maximum,
        session_expiry_s=session_expiry,
        metrics_port=None if metrics_port < 0 else metrics_port,
        log_interval_s=log_interval,
        delivery_timeout_s=delivery_timeout,
        only_devices=tuple(only_device or ()),
    )
    bridge = Bridge(settings, config)

    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        console.log(f"received {signal.Signals(signum).name}: finishing in-flight work")
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    table = Table(title=f"fleetwatch ingest [{instance}]", show_header=False)
    subs = bridge.subscriptions
    shown = subs[0] if len(subs) == 1 else f"{subs[0]} (+{len(subs) - 1} more)"
    table.add_row("MQTT", f"{settings.mqtt_host}:{settings.mqtt_port}  {shown}")
    table.add_row("client id", config.client_id)
    table.add_row("Kafka", f"{settings.kafka_bootstrap}  {topic} (dead letters: {dlq_topic})")
    table.add_row("receive maximum", str(receive_maximum))
    table.add_row("registry", bridge.registry.source)
    console.print(table)

    bridge.start()
    if bridge.metrics_port is not None:
        console.log(f"metrics: http://{config.metrics_host}:{bridge.metrics_port}/metrics")
    console.log("bridge running; SIGTERM or Ctrl-C stops it gracefully")
    done.wait()
    bridge.stop(leave=leave)
    snap = bridge.metrics.snapshot()
    summary = Table(title="ingest totals")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for name, value in snap.items():
        if isinstance(value, dict):
            for code, count in sorted(value.items()):
                summary.add_row(f"rejected: {code}", str(count))
        else:
            summary.add_row(name, f"{value:g}")
    console.print(summary)
