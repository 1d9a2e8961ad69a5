"""The pipeline's services as supervisor specs: bridge(s), worker(s), sink, notifier (public CLIs only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fleetwatch import topics
from fleetwatch.kafka_io import read_topic
from fleetwatch.records import parse_ops_event
from fleetwatch.settings import Settings
from pipeline.supervisor import ServiceSpec


@dataclass(frozen=True)
class Layout:
    """How many of each service, and what they read."""

    rules: Path
    routes: Path | None = None  # None: no notifier
    bridges: int = 1
    workers: int = 1
    sinks: int = 1


def pipeline_specs(layout: Layout, env: Mapping[str, str] | None = None) -> list[ServiceSpec]:
    """In pipeline order (the supervisor starts and stops them in this order). Several bridges
    share the MQTT shared subscription; workers and sinks share their consumer groups."""
    extra = dict(env or {})
    specs = [
        ServiceSpec.fleetwatch(f"bridge-{i}", "ingest", "--instance", f"run-{i}", env=extra)
        for i in range(1, layout.bridges + 1)
    ]
    specs += [
        ServiceSpec.fleetwatch(
            f"worker-{i}", "worker", "--config", str(layout.rules), "--name", f"worker-{i}", env=extra
        )
        for i in range(1, layout.workers + 1)
    ]
    specs += [ServiceSpec.fleetwatch(f"sink-{i}", "sink", env=extra) for i in range(1, layout.sinks + 1)]
    if layout.routes is not None:
        specs.append(
            ServiceSpec.fleetwatch("notify", "notify", "run", "--routes", str(layout.routes), env=extra)
        )
    return specs


def wait_workers_started(
    settings: Settings, names: list[str], since: dict[int, int], stop: threading.Event, timeout_s: float = 180
) -> None:
    """Until each named worker has said `worker_started` on the ops topic (after ``since``)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        started = {
            e.worker
            for e in (parse_ops_event(r.value) for r in read_topic(settings, topics.OPS, since=since))
            if e.kind == "worker_started"
        }  # fmt: skip
        if set(names) <= started:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers {sorted(set(names) - started)} did not start within {timeout_s:g} s")
        stop.wait(1.0)
