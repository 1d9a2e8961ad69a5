"""Shared plumbing for the stack services: paths, errors, templates, processes, ports, apt."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import fleetwatch

#: Repo-top directory holding the pom and the config templates (the package is installed editable).
TEMPLATES_DIR = Path(fleetwatch.__file__).resolve().parent.parent / "stack"

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class StackError(RuntimeError):
    """A stack service failed: says which one, what went wrong and where its log is."""

    def __init__(self, service: str, what: str, log: Path | None = None) -> None:
        self.service = service
        self.what = what
        self.log = log
        where = f" (log: {log})" if log else ""
        super().__init__(f"{service}: {what}{where}")


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One row of `fleetwatch stack status`."""

    service: str
    state: str  # running | stopped | foreign (port held by a process we did not start)
    port: int
    version: str
    data_dir: Path
    log: Path
    pid: int | None = None


def template_path(*parts: str) -> Path:
    path = TEMPLATES_DIR.joinpath(*parts)
    if not path.is_file():
        raise StackError("stack", f"template {path} is missing (is fleetwatch installed from the repo?)")
    return path


def render(text: str, values: Mapping[str, object]) -> str:
    """Replace ``{{name}}`` placeholders; every placeholder must have a value and vice versa."""
    used = set(_PLACEHOLDER.findall(text))
    missing = sorted(used - values.keys())
    if missing:
        raise ValueError(f"template placeholders without a value: {', '.join(missing)}")
    unused = sorted(values.keys() - used)
    if unused:
        raise ValueError(f"values not used by the template: {', '.join(unused)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def render_template(name: Sequence[str], values: Mapping[str, object]) -> str:
    return render(template_path(*name).read_text(), values)


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write atomically; return whether the content changed (so callers can reload only then)."""
    if path.exists() and path.read_text() == text:
        os.chmod(path, mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def is_root() -> bool:
    return os.geteuid() == 0


def chown_to(path: Path, user: str, recursive: bool = False) -> None:
    """Hand ``path`` to a service user (only possible, and only needed, when we are root)."""
    if not is_root():
        return
    shutil.chown(path, user, user)
    if recursive and path.is_dir():
        for child in path.rglob("*"):
            shutil.chown(child, user, user)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock: concurrent `stack up`s and device updates from parallel test
    sessions must not interleave their read-modify-write of shared files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _blocking_parent(path: Path) -> Path | None:
    """The first existing directory above ``path`` that other users cannot pass, if any."""
    return next((p for p in path.parents if p.exists() and not p.stat().st_mode & stat.S_IXOTH), None)


def check_traversable(path: Path, service: str, os_user: str) -> None:
    """The service drops to ``os_user``: every directory above its data must let that user pass."""
    parent = _blocking_parent(path)
    if parent is not None:
        raise StackError(service, f"{parent} is not traversable by the {os_user} OS user: "
                         f"`chmod o+x {parent}` or set FLEETWATCH_STACK_DIR elsewhere")


#: Where the stack lives when the checkout itself is out of the service users' reach.
RELOCATED_ROOT = Path("/var/lib/fleetwatch")
#: PostgreSQL's socket is <stack>/pg/run/.s.PGSQL.<port> and sun_path holds 107 bytes.
_MAX_STACK_PATH = 80


def place_stack_dir(stack_dir: Path) -> Path:
    """Make ``stack_dir`` usable by the services' OS users; return its real path.

    Mosquitto and PostgreSQL drop to their own users, which must walk every directory above
    their data, and PostgreSQL's socket path must fit in 107 bytes. A checkout under a private
    home (``/root`` is 0700) or a deep path fails both, so as root such a stack dir becomes a
    symlink to ``/var/lib/fleetwatch/<hash of its path>``: everything stays reachable through
    ``stack_dir`` and nobody's permissions are loosened.
    """
    real = stack_dir.resolve()
    if stack_dir.is_symlink() or not is_root():
        return real
    if _blocking_parent(real) is None and len(str(real)) <= _MAX_STACK_PATH:
        return real
    if real.exists() and any(real.iterdir()):
        raise StackError("stack", f"{real} is out of reach of the mosquitto/postgres OS users (or too long "
                         "for a unix socket) and already holds data: move it, or set FLEETWATCH_STACK_DIR")
    target = RELOCATED_ROOT / hashlib.sha1(str(real).encode()).hexdigest()[:12]
    target.mkdir(parents=True, exist_ok=True)
    for directory in (RELOCATED_ROOT, target):
        directory.chmod(0o755)
    if real.exists():
        real.rmdir()
    real.parent.mkdir(parents=True, exist_ok=True)
    real.symlink_to(target, target_is_directory=True)
    return target


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) is not alive.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def read_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive AND is ours (its command line has ``marker``).

    After a reboot a stale pid may belong to an unrelated process: never treat it as ours (or signal it).
    """
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) and marker in cmdline(pid) else None


def spawn(argv: Sequence[str], log: Path, pid_file: Path, cwd: Path | None = None) -> int:
    """Start a long-running daemon detached from us, output appended to ``log``; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, timeout: float) -> bool:
    """SIGTERM, wait, then SIGKILL; return True if it exited before the kill."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    time.sleep(0.2)
    _reap(pid)
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.2,
) -> bool:
    """Poll ``check`` until true or timeout; stop early (False) when ``alive`` says the process died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:
            pass
        if alive is not None and not alive():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run(
    argv: Sequence[str],
    service: str,
    what: str,
    log: Path | None = None,
    *,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> str:
    """Run a helper command; on failure raise StackError with its output (also appended to ``log``)."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            env={**os.environ, **env} if env else None,
            cwd=cwd,
            timeout=timeout,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise StackError(service, f"{what}: command not found: {argv[0]}", log) from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(service, f"{what}: timed out after {timeout} s: {' '.join(argv)}", log) from exc
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as fh:
            fh.write(f"\n$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
        detail = "\n  ".join(tail)
        raise StackError(service, f"{what} failed (exit {proc.returncode}):\n  {detail}", log)
    return proc.stdout


def tail(path: Path, lines: int = 40) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return data.splitlines()[-lines:]


# --------------------------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------------------------

_apt_updated = False


def missing_packages(packages: Iterable[str]) -> list[str]:
    missing = []
    for pkg in packages:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", pkg], capture_output=True, text=True
        )
        if proc.returncode != 0 or proc.stdout.strip() != "installed":
            missing.append(pkg)
    return missing


def apt_update(log: Path) -> None:
    global _apt_updated
    if _apt_updated:
        return
    run(["apt-get", "update", "-q"], "apt", "apt-get update", log, env=_APT_ENV, timeout=600)
    _apt_updated = True


_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}


def apt_install(packages: Sequence[str], log: Path, service: str) -> list[str]:
    """Install whatever of ``packages`` is missing (non-interactive); return what was installed."""
    missing = missing_packages(packages)
    if not missing:
        return []
    if not is_root():
        raise StackError(service, f"Debian packages missing: {' '.join(missing)} (run as root to install)")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    try:
        run(argv, service, "apt-get install", log, env=_APT_ENV, timeout=900)
    except StackError:
        # A fresh machine may have stale or empty package lists.
        apt_update(log)
        run(argv, service, "apt-get install", log, env=_APT_ENV, timeout=900)
    return missing
