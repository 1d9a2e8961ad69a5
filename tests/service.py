"""A `fleetwatch` subcommand as a child process for tests: started, waited for, SIGKILLed, restarted,
stopped. The bridge, worker, sink and notifier helpers are this class with their own readiness line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from fleetwatch.settings import Settings
from fleetwatch.stack import StackError, ensure_up

FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))


class ServiceProcess:
    """``fleetwatch ARGV…`` with its output appended to ``log``.

    ``ready`` is a line the service logs once it is serving: `start` waits until the log holds one
    more of it than before (so a restart waits for the new process, not the old line). Every start
    is counted (`starts`) and every exit that the test did not ask for (`unexpected_exits`), which
    is how a fault test tells a service that restarts from one that crash-loops.
    """

    def __init__(
        self,
        log: Path,
        argv: Sequence[str],
        *,
        ready: str | None = None,
        env: dict[str, str] | None = None,
        name: str = "",
    ) -> None:
        self.log = log
        self.argv = [FLEETWATCH, *argv]
        self.ready = ready
        self.env = {**os.environ, "COLUMNS": "200", **(env or {})}
        self.name = name or argv[0]
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.unexpected_exits: list[int] = []
        self._exits_seen: set[int] = set()
        self._ready_seen = 0

    def start(self, *extra: str, timeout_s: float = 90.0) -> Self:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as fh:
            argv = [*self.argv, *extra]
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
        self.starts += 1
        if self.ready is None:
            return self
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.check_alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}")
            seen = self.log_text().count(self.ready)
            if seen > self._ready_seen:
                self._ready_seen = seen
                self.on_ready()
                return self
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not log {self.ready!r} in {timeout_s} s; log:\n{self.tail()}")

    def on_ready(self) -> None:
        """Hook: read what the service logged at start (e.g. a port)."""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> bool:
        """False (and the exit recorded, once per process) if it exited without the test asking."""
        proc = self.proc
        if proc is None or proc.poll() is None:
            return proc is not None
        if proc.pid not in self._exits_seen:
            self._exits_seen.add(proc.pid)
            self.unexpected_exits.append(proc.returncode)
        return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.check_alive()
        self._exits_seen.add(self.proc.pid)  # this exit is the test's doing
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the graceful shutdown (SIGKILL after ``timeout_s``); the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is not None:
            return self.proc.returncode
        self._exits_seen.add(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def ensure_stopped(self) -> None:
        """Teardown: never leave a service running, whatever happened to the test."""
        if self.running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.stop(30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stack_up_again(settings: Settings, timeout_s: float = 120.0) -> None:
    """`fleetwatch stack up` after a test took a service down, retried while it is still stopping."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ensure_up(settings)
            return
        except StackError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)
