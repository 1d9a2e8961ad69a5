"""Runs the pipeline's services as child processes: start, restart with backoff, crash-loop, clean stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

#: Linux prctl option: the child gets this signal when its parent (the supervisor) dies, so even a
#: kill -9 of the supervisor leaves no service running unsupervised.
_PR_SET_PDEATHSIG = 1


class State(StrEnum):
    STARTING = "starting"  # spawned, not yet stable
    RUNNING = "running"
    BACKOFF = "backoff"  # exited unexpectedly, waiting to be restarted
    CRASH_LOOP = "crash-loop"  # too many exits in a short window: restarted only at the longest backoff
    STOPPED = "stopped"  # stopped on purpose (or never started)


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its name, the command line and any extra environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def fleetwatch(cls, name: str, *args: str, env: Mapping[str, str] | None = None) -> ServiceSpec:
        """``fleetwatch ARGS…`` with the supervisor's own interpreter (no PATH lookup)."""
        return cls(name, (sys.executable, "-m", "fleetwatch", *args), dict(env or {}))


@dataclass(frozen=True)
class Health:
    name: str
    state: State
    pid: int | None
    restarts: int
    uptime_s: float
    last_exit: int | None


@dataclass(frozen=True)
class Policy:
    """Restart policy: backoff doubles from ``backoff_s`` to ``backoff_max_s``; a service that ran
    ``stable_s`` counts as healthy again (backoff reset); ``crash_loop_exits`` exits within
    ``crash_loop_window_s`` is a crash loop. ``stop_timeout_s``: SIGTERM, then SIGKILL."""

    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    stable_s: float = 20.0
    crash_loop_exits: int = 5
    crash_loop_window_s: float = 120.0
    stop_timeout_s: float = 30.0


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child must not dlopen


def _die_with_parent() -> None:
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Service:
    def __init__(self, spec: ServiceSpec, log: Path) -> None:
        self.spec = spec
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = State.STOPPED
        self.started_at = 0.0
        self.restarts = 0
        self.consecutive_crashes = 0
        self.exits: deque[float] = deque()
        self.restart_at = 0.0
        self.last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class Supervisor:
    """Start/stop/kill/restart named services; a monitor thread restarts the ones that exit.

    Each child runs in its own session (a Ctrl-C in the terminal reaches only the supervisor, which
    then stops the services in order) and gets SIGTERM should the supervisor itself die. The kernel
    ties that signal to the *thread* that forked the child, so every spawn happens on the monitor
    thread, which lives as long as the supervisor.
    """

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        log_dir: Path,
        policy: Policy | None = None,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.policy = policy or Policy()
        self.log_dir = log_dir
        self._services: dict[str, _Service] = {}
        for spec in specs:
            if spec.name in self._services:
                raise ValueError(f"service name {spec.name!r} is used twice")
            self._services[spec.name] = _Service(spec, log_dir / f"{spec.name}.log")
        self._on_event = on_event or (lambda _name, _text: None)
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._monitor: threading.Thread | None = None
        self._spawns: queue.Queue[tuple[_Service, queue.Queue[BaseException | None]]] = queue.Queue()

    # --- public API ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._services)

    def start(self) -> Supervisor:
        """Start every service (in the order given) and the monitor."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._monitor is None:
            self._closing.clear()
            self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
            self._monitor.start()
        for name in self._services:
            self.start_service(name)
        return self

    def start_service(self, name: str) -> int:
        """Start a stopped service (on the monitor thread); its pid."""
        service = self._get(name)
        if self._monitor is None:
            raise RuntimeError("the supervisor is not started")
        done: queue.Queue[BaseException | None] = queue.Queue()
        self._spawns.put((service, done))
        error = done.get(timeout=30)
        if error is not None:
            raise error
        assert service.proc is not None
        return service.proc.pid

    def stop_service(self, name: str) -> int | None:
        """SIGTERM, wait up to the stop timeout, then SIGKILL; the exit code. Not restarted."""
        with self._lock:
            service = self._get(name)
            service.state = State.STOPPED
        return self._terminate(service)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a service's process group, as a crash would: the monitor restarts it."""
        with self._lock:
            pid = self._get(name).pid
        if pid is None:
            raise RuntimeError(f"service {name!r} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def restart(self, name: str) -> int:
        self.stop_service(name)
        return self.start_service(name)

    def pids(self) -> dict[str, int | None]:
        with self._lock:
            return {name: s.pid for name, s in self._services.items()}

    def health(self) -> list[Health]:
        now = time.monotonic()
        with self._lock:
            return [
                Health(name, s.state, s.pid, s.restarts, now - s.started_at if s.pid else 0.0, s.last_exit)
                for name, s in self._services.items()
            ]

    def stop(self) -> dict[str, int | None]:
        """Stop every service in the order given (upstream first: the bridge stops taking fixes
        from MQTT before the worker and the sink stop), then the monitor; each one's exit code."""
        with self._lock:
            for service in self._services.values():
                service.state = State.STOPPED  # the monitor restarts nothing from here on
        codes = {name: self.stop_service(name) for name in self._services}
        self._closing.set()
        if self._monitor is not None:
            self._monitor.join(5)
            self._monitor = None
        return codes

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- internals ----------------------------------------------------------------------------
    def _get(self, name: str) -> _Service:
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"no service {name!r}; services: {', '.join(self._services)}") from None

    def _spawn(self, service: _Service) -> None:
        env = {**os.environ, **service.spec.env}
        with service.log.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: starting\n".encode())
            log.flush()
            service.proc = subprocess.Popen(
                list(service.spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        service.state = State.STARTING
        service.started_at = time.monotonic()
        self._on_event(service.spec.name, f"started (pid {service.proc.pid})")

    def _terminate(self, service: _Service) -> int | None:
        proc = service.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.policy.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._on_event(
                    service.spec.name, f"no exit {self.policy.stop_timeout_s:g} s after SIGTERM: SIGKILL"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        # Anything the service left behind in its group (it should leave nothing) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        service.last_exit = proc.returncode
        return proc.returncode

    def _watch(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(queue.Empty):
                service, done = self._spawns.get(timeout=0.2)
                try:
                    with self._lock:
                        if service.pid is None:
                            self._spawn(service)
                    done.put(None)
                except BaseException as exc:  # handed to the caller of start_service
                    done.put(exc)
                continue
            now = time.monotonic()
            with self._lock:
                for service in self._services.values():
                    self._check(service, now)

    def _check(self, service: _Service, now: float) -> None:
        policy = self.policy
        if service.state is State.STOPPED or self._closing.is_set():
            return
        if service.state in (State.BACKOFF, State.CRASH_LOOP):
            if now >= service.restart_at:
                service.restarts += 1
                self._spawn(service)
            return
        assert service.proc is not None
        code = service.proc.poll()
        if code is None:
            if service.state is State.STARTING and now - service.started_at >= policy.stable_s:
                service.state = State.RUNNING
                service.consecutive_crashes = 0
            return
        service.last_exit = code
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.proc.pid, signal.SIGKILL)  # orphans of the dead service
        service.consecutive_crashes += 1
        service.exits.append(now)
        while service.exits and now - service.exits[0] > policy.crash_loop_window_s:
            service.exits.popleft()
        delay = min(policy.backoff_s * 2 ** (service.consecutive_crashes - 1), policy.backoff_max_s)
        if len(service.exits) >= policy.crash_loop_exits:
            service.state, delay = State.CRASH_LOOP, policy.backoff_max_s
            verdict = f"crash loop: {len(service.exits)} exits in {policy.crash_loop_window_s:g} s"
        else:
            service.state = State.BACKOFF
            verdict = "exited"
        service.restart_at = now + delay
        self._on_event(service.spec.name, f"{verdict} (code {code}); restart in {delay:g} s")
