"""The pipeline's services as supervisor specs: bridge(s), worker(s), sink, notifier (public CLIs only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
