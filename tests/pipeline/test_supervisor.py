"""The supervisor with plain child processes (no brokers): restart with backoff, crash loops,
clean stop, SIGKILL for a child that ignores SIGTERM, and no orphan when the supervisor is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.supervisor import Policy, ServiceSpec, State, Supervisor

FAST = Policy(backoff_s=0.2, backoff_max_s=1.0, stable_s=1.0, crash_loop_exits=3, crash_loop_window_s=10,
              stop_timeout_s=2.0)  # fmt: skip


def python(name: str, code: str) -> ServiceSpec:
    return ServiceSpec(name, (sys.executable, "-c", textwrap.dedent(code)))


SLEEPER = "import time\nwhile True: time.sleep(1)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: only its parent has not reaped it yet.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1][0] != "Z"


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_a_killed_service_is_restarted_and_stop_leaves_nothing(tmp_path: Path) -> None:
    sup = Supervisor([python("a", SLEEPER), python("b", SLEEPER)], tmp_path, FAST).start()
    try:
        first = sup.pids()
        assert all(first.values())
        sup.kill("a")
        wait_until(lambda: sup.pids()["a"] not in (None, first["a"]))
        [a, b] = sup.health()
        assert a.restarts == 1 and a.last_exit == -signal.SIGKILL and b.restarts == 0
        assert sup.pids()["b"] == first["b"]
        wait_until(lambda: sup.health()[0].state is State.RUNNING)  # stable again after stable_s
        pids = sup.pids()
    finally:
        codes = sup.stop()
    assert codes == {"a": -signal.SIGTERM, "b": -signal.SIGTERM}
    assert not any(alive(p) for p in [*first.values(), *pids.values()] if p)
    assert {h.state for h in sup.health()} == {State.STOPPED}


def test_a_crash_loop_is_noticed_and_backs_off(tmp_path: Path) -> None:
    events: list[str] = []
    sup = Supervisor([python("crashy", "raise SystemExit(3)")], tmp_path, FAST,
                     on_event=lambda n, t: events.append(t))  # fmt: skip
    sup.start()
    try:
        wait_until(lambda: sup.health()[0].state is State.CRASH_LOOP)
        [h] = sup.health()
        assert h.last_exit == 3 and h.restarts == FAST.crash_loop_exits - 1
        assert any("crash loop" in e for e in events)
        # Backoff doubles: 0.2 s then 0.4 s between the first restarts.
        assert [e.rsplit("in ", 1)[1] for e in events if "restart in" in e][:2] == ["0.2 s", "0.4 s"]
    finally:
        sup.stop()


def test_stop_and_restart_named_service(tmp_path: Path) -> None:
    sup = Supervisor([python("a", SLEEPER)], tmp_path, FAST).start()
    try:
        old = sup.pids()["a"]
        new = sup.restart("a")
        assert old is not None and new != old and not alive(old)
        sup.stop_service("a")
        time.sleep(0.5)  # the monitor must not bring a stopped service back
        assert sup.pids() == {"a": None} and sup.health()[0].state is State.STOPPED
        assert sup.start_service("a") > 0
    finally:
        sup.stop()


def test_a_service_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    stubborn = python(
        "stubborn", f"import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n{SLEEPER}"
    )
    sup = Supervisor([stubborn], tmp_path, FAST).start()
    pid = sup.pids()["stubborn"]
    time.sleep(0.3)  # let it install its handler
    began = time.monotonic()
    assert sup.stop() == {"stubborn": -signal.SIGKILL}
    assert FAST.stop_timeout_s <= time.monotonic() - began < FAST.stop_timeout_s + 5
    assert pid is not None and not alive(pid)


def test_duplicate_and_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'a' is used twice"):
        Supervisor([python("a", SLEEPER), python("a", SLEEPER)], tmp_path)
    sup = Supervisor([python("a", SLEEPER)], tmp_path, FAST)
    with pytest.raises(KeyError, match="no service 'b'; services: a"):
        sup.kill("b")


def test_kill_9_of_the_supervisor_takes_its_services_down(tmp_path: Path) -> None:
    script = tmp_path / "sup.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from pipeline.supervisor import ServiceSpec, Supervisor
        spec = ServiceSpec("s", (sys.executable, "-c", {SLEEPER!r}))
        sup = Supervisor([spec], Path({str(tmp_path)!r})).start()
        print(sup.pids()["s"], flush=True)
        time.sleep(600)
    """))  # fmt: skip
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])  # fmt: skip
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    assert alive(child)
    proc.kill()
    proc.wait()
    wait_until(lambda: not alive(child), 10)
