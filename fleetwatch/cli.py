"""The single `fleetwatch` console script: each package registers its own subcommands here."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="fleetwatch",
    help="Streaming telemetry and supervision for official vehicles (公务用车).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

#: Every module here exposes ``register(app: typer.Typer) -> None``; order is the help order.
COMMAND_MODULES: tuple[str, ...] = (
    "fleetwatch.stack.cli",  # fleetwatch stack up|down|status|logs
    "simulator.cli",  # fleetwatch simulate ...
    "ingest.cli",  # fleetwatch ingest
    "ingest.jt808.cli",  # fleetwatch jt808
    "streams.cli",  # fleetwatch detect / score
    "streams.worker.cli",  # fleetwatch worker, fleetwatch orders add
    "registry.cli",  # fleetwatch devices add|list|remove
    "store.cli",  # fleetwatch db migrate|status|maintain|account|import-registry
    "sink.cli",  # fleetwatch sink
    "notify.cli",  # fleetwatch notify run|log
    "workflow.cli",  # fleetwatch alerts ...|complaint add|list
    "evidence.cli",  # fleetwatch evidence
    "dashboards.cli",  # fleetwatch dashboards build|check|provision|demo
    "pipeline.cli",  # fleetwatch run (the supervised pipeline), fleetwatch demo
)


@app.callback()
def _root() -> None:
    """fleetwatch: MQTT -> Kafka -> detection -> TimescaleDB, with a device simulator."""


def _register_all() -> None:
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
