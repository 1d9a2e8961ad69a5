"""The local stack (Mosquitto, Kafka, PostgreSQL + TimescaleDB): install, start, check, stop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from fleetwatch.settings import Settings

from . import _kafka, _mosquitto, _postgres
from ._common import ServiceStatus, StackError, file_lock, place_stack_dir
from ._secrets import ensure_secrets

__all__ = [
    "ServiceStatus",
    "StackError",
    "down",
    "ensure_up",
    "log_path",
    "status",
]

SERVICES: tuple[str, ...] = ("mosquitto", "kafka", "postgres")
T = TypeVar("T")


def _install_log(settings: Settings) -> Path:
    return settings.stack_dir.resolve() / "logs" / "install.log"


def log_path(settings: Settings, service: str) -> Path:
    """The log file of ``service`` (one of SERVICES, or 'install' / 'timescaledb-build')."""
    logs = settings.stack_dir.resolve() / "logs"
    known = {*SERVICES, "install", "timescaledb-build"}
    if service not in known:
        raise ValueError(f"service: unknown {service!r} (expected one of {', '.join(sorted(known))})")
    return logs / f"{service}.log"


class _Progress:
    """Prints one line per step with its duration; a spinner while a step runs."""

    def __init__(self, console: Console | None, logs: dict[str, Path] | None = None) -> None:
        self.console = console
        self.logs = logs or {}

    def step(self, label: str, fn: Callable[[], T], describe: Callable[[T], str] = str) -> T:
        started = time.monotonic()
        spinner: AbstractContextManager[object] = (
            self.console.status(f"{label} ...") if self.console is not None else nullcontext()
        )
        try:
            with spinner:
                result = fn()
        except Exception as exc:
            if self.console is not None:
                self.console.print(f"[red]✗[/] {label}")
            if isinstance(exc, StackError):
                raise
            # A client library's error still has to say which service and where to look.
            service = label.split(":", 1)[0]
            log = self.logs.get(service)
            raise StackError(service, f"{label}: {type(exc).__name__}: {exc}", log) from exc
        if self.console is not None:
            took = time.monotonic() - started
            self.console.print(f"[green]✓[/] {label}: {describe(result)} [dim]({took:.1f} s)[/]")
        return result


def ensure_up(settings: Settings, console: Console | None = None) -> list[ServiceStatus]:
    """Install what is missing, start what is stopped, health-check everything; idempotent.

    Raises StackError naming the service, what failed and its log file.
    """
    stack = place_stack_dir(settings.stack_dir)
    stack.mkdir(parents=True, exist_ok=True)
    stack.chmod(0o755)  # the postgres/mosquitto OS users must traverse it
    apt_log = _install_log(settings)
    apt_log.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test sessions each call ensure_up: one at a time, later ones find everything running.
    with file_lock(stack / "locks" / "up.lock"):
        logs = {name: log_path(settings, name) for name in SERVICES}
        _ensure_up_locked(settings, _Progress(console, logs), apt_log)
    return status(settings)


def _ensure_up_locked(settings: Settings, progress: _Progress, apt_log: Path) -> None:
    stack = settings.stack_dir.resolve()

    secrets_ = progress.step("secrets", lambda: ensure_secrets(settings),
                             lambda s: f"{len(s)} in {stack / 'secrets'}")
    progress.step("mosquitto: packages", lambda: _mosquitto.install(settings, apt_log),
                  lambda done: f"installed {' '.join(done)}" if done else "present")
    progress.step("mosquitto: TLS CA + server certificate", lambda: _mosquitto.ensure_tls(settings, apt_log),
                  lambda made: "made " + "; ".join(made) if made else f"present in {stack / 'tls'}")
    progress.step(f"mosquitto: broker on {settings.mqtt_host}:{settings.mqtt_port}, "
                  f"TLS on {settings.mqtt_tls_bind}:{settings.mqtt_tls_port}",
                  lambda: _mosquitto.ensure_up(settings, secrets_))
    progress.step("kafka: jars (Maven)", lambda: _kafka.install(settings, apt_log),
                  lambda done: f"resolved {_kafka.installed_version(_kafka.paths(settings))}"
                  if done else "cached")
    progress.step(f"kafka: KRaft node on {settings.kafka_bootstrap}", lambda: _kafka.ensure_up(settings))
    progress.step("kafka: SCRAM accounts + ACLs", lambda: _kafka.ensure_access(settings),
                  lambda changes: "; ".join(changes) if changes else "as specified")
    progress.step("kafka: topics", lambda: _kafka.ensure_topics(settings),
                  lambda changes: "; ".join(changes) if changes else "all present and as specified")
    progress.step("postgres: packages + TimescaleDB", lambda: _postgres.install(settings, apt_log))
    progress.step(f"postgres: cluster on {settings.pg_host}:{settings.pg_port}",
                  lambda: _postgres.ensure_up(settings, secrets_["pg_password"]))


def down(
    settings: Settings, console: Console | None = None, services: Iterable[str] = SERVICES
) -> dict[str, bool]:
    """Stop services (all by default; data kept); returns service -> whether it was running.

    Stopping one service (``services=("kafka",)``) is how outage tests take a real broker away;
    `ensure_up` brings it back.
    """
    wanted = set(services)
    unknown = wanted - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown service(s) {sorted(unknown)}; the stack has {', '.join(SERVICES)}")
    progress = _Progress(console, {name: log_path(settings, name) for name in SERVICES})
    stopped: dict[str, bool] = {}
    # Reverse start order: consumers of Kafka/PG may be the bridge fed by Mosquitto.
    for name, stop in (("postgres", _postgres.stop), ("kafka", _kafka.stop), ("mosquitto", _mosquitto.stop)):
        if name not in wanted:
            continue
        stopped[name] = progress.step(f"{name}: stop", lambda stop=stop: stop(settings),  # type: ignore[misc]
                                      lambda was: "stopped" if was else "was not running")
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    try:
        pg_password: str | None = settings.secret("pg_password")
    except RuntimeError:
        pg_password = None
    return [_mosquitto.status(settings), _kafka.status(settings), _postgres.status(settings, pg_password)]

