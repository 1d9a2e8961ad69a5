"""`fleetwatch run` (the supervised pipeline until Ctrl-C / SIGTERM) and `fleetwatch demo`."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.observe import health_table
from pipeline.services import Layout, pipeline_specs
from pipeline.supervisor import Policy, Supervisor

console = Console(width=None if sys.stdout.isatty() else 150)


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    from pipeline.demo import demo_cmd

    app.command("demo")(demo_cmd)


def wait_for_signal() -> int:
    """Block until SIGINT or SIGTERM; the signal number."""
    got: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        got.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    while not stop.wait(0.5):
        pass
    return got[0]


def run_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="rules.yaml for the workers.")],
    routes: Annotated[
        Path | None, typer.Option(help="Routing YAML for the notifier (omit: no notifier).")
    ] = None,
    bridges: Annotated[int, typer.Option(min=1, help="Bridge instances (MQTT shared subscription).")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker instances (one consumer group).")] = 1,
    sinks: Annotated[int, typer.Option(min=1, help="Sink instances (one consumer group).")] = 1,
    log_dir: Annotated[Path, typer.Option(help="One log file per service here.")] = Path("out/run/logs"),
) -> None:
    """Bridge(s), worker(s), sink(s) and notifier as supervised child processes: a crashed one is
    restarted with backoff (a crash loop is reported); Ctrl-C / SIGTERM stops them all."""
    layout = Layout(config, routes, bridges, workers, sinks)

    def event(name: str, text: str) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} [bold]{name}[/] {text}")

    supervisor = Supervisor(pipeline_specs(layout), log_dir, Policy(), on_event=event)
    supervisor.start()
    console.print(f"logs in {log_dir}/; Ctrl-C stops everything")
    try:
        signum = wait_for_signal()
        console.print(f"{signal.Signals(signum).name}: stopping")
    finally:
        codes = supervisor.stop()
    console.print(health_table(supervisor.health(), "stopped"))
    console.print("exit codes: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
