"""Mosquitto: our own broker process (not the system service), its password file, ACL and devices."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fleetwatch.settings import Settings

from ._common import (
    ServiceStatus,
    StackError,
    apt_install,
    check_traversable,
    chown_to,
    file_lock,
    is_root,
    pid_alive,
    port_open,
    read_pid,
    render_template,
    spawn,
    stop_pid,
    wait_until,
    write_if_changed,
)

SERVICE = "mosquitto"
PACKAGES = ("mosquitto", "mosquitto-clients", "kcat")
NOTIFY_PREFIX = "fleetwatch/v1/notify"
_OS_USER = "mosquitto"

# Mosquitto 2's own format: user:$7$<iterations>$<b64 salt>$<b64 PBKDF2-HMAC-SHA512>.
_PW_ITERATIONS = 101
_PW_SALT_BYTES = 12
# device_id becomes an MQTT username and a topic level: no separators or wildcards.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Paths:
    root: Path
    conf: Path
    passwd: Path
    acl: Path
    data: Path
    pid: Path
    log: Path
    registry: Path


def paths(settings: Settings) -> Paths:
    stack = settings.stack_dir.resolve()
    root = stack / "mosquitto"
    return Paths(
        root=root,
        conf=root / "mosquitto.conf",
        passwd=root / "passwd",
        acl=root / "acl",
        data=root / "data",
        pid=root / "mosquitto.pid",
        log=stack / "logs" / "mosquitto.log",
        registry=stack / "registry.csv",
    )


# --------------------------------------------------------------------------------------------
# password file (pure)
# --------------------------------------------------------------------------------------------


def hash_password(username: str, password: str, salt: bytes | None = None,
                  iterations: int = _PW_ITERATIONS) -> str:
    """One password-file line in mosquitto's ``$7$`` (PBKDF2-SHA512) format."""
    salt = salt if salt is not None else secrets.token_bytes(_PW_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"{username}:$7${iterations}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def verify_password(line: str, password: str) -> bool:
    """Whether a password-file line accepts ``password`` (False for formats we do not write)."""
    try:
        _, hashed = line.split(":", 1)
        _, kind, iterations, salt_b64, digest_b64 = hashed.split("$")
        if kind != "7":
            return False
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt_b64),
                                     int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def parse_passwd(text: str) -> dict[str, str]:
    """username -> full line, keeping file order."""
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            entries[line.split(":", 1)[0]] = line
    return entries


def format_passwd(entries: dict[str, str]) -> str:
    return "".join(line + "\n" for line in entries.values())


class DeviceRowError(ValueError):
    """A device row that cannot become an MQTT account: which row, field, value and why."""

    def __init__(self, row: int, field: str, value: object, reason: str) -> None:
        self.row, self.field, self.value, self.reason = row, field, value, reason
        super().__init__(f"device row {row}: field {field!r}: {reason} (got {value!r})")


def validate_devices(rows: Iterable[tuple[str, str, str]], reserved: Iterable[str] = ()
                     ) -> list[tuple[str, str, str]]:
    """Check each (device_id, vehicle_id, password); later rows for the same device win."""
    reserved_names = set(reserved)
    checked: dict[str, tuple[str, str, str]] = {}
    for number, row in enumerate(rows, start=1):
        if len(row) != 3:
            raise DeviceRowError(number, "row", row, "expected device_id, vehicle_id, password")
        device_id, vehicle_id, password = (str(v).strip() for v in row)
        if not _DEVICE_ID.match(device_id):
            raise DeviceRowError(number, "device_id", device_id,
                                 "must be 1-64 of A-Z a-z 0-9 _ . - "
                                 "(it is an MQTT username and topic level)")
        if device_id in reserved_names or device_id.startswith("svc-"):
            raise DeviceRowError(number, "device_id", device_id, "reserved for service accounts")
        if not vehicle_id or any(c in vehicle_id for c in ",\n\r"):
            raise DeviceRowError(number, "vehicle_id", vehicle_id,
                                 "must be non-empty, without commas or newlines")
        if not password or any(c in password for c in "\n\r"):
            raise DeviceRowError(number, "password", "***", "must be non-empty, without newlines")
        checked[device_id] = (device_id, vehicle_id, password)
    return list(checked.values())


def read_devices_csv(path: Path) -> list[tuple[str, str, str]]:
    """Rows of a ``device_id,vehicle_id,password`` CSV (header required)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        want = ["device_id", "vehicle_id", "password"]
        header = [h.strip() for h in reader.fieldnames or []]
        if header[:3] != want:
            raise DeviceRowError(0, "header", ",".join(header), f"expected header {','.join(want)}")
        return [(r["device_id"], r["vehicle_id"], r["password"]) for r in reader]


def read_registry(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["device_id"]: r["vehicle_id"] for r in csv.DictReader(fh)}


def format_registry(registry: dict[str, str]) -> str:
    lines = ["device_id,vehicle_id"]
    lines += [f"{device},{vehicle}" for device, vehicle in sorted(registry.items())]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


def service_accounts(settings: Settings, secrets_: dict[str, str]) -> dict[str, str]:
    return {
        settings.mqtt_bridge_user: secrets_["mqtt_bridge_password"],
        settings.mqtt_notifier_user: secrets_["mqtt_notifier_password"],
        settings.mqtt_admin_user: secrets_["mqtt_admin_password"],
    }


def render_conf(settings: Settings, p: Paths, as_root: bool) -> str:
    return render_template(("mosquitto", "mosquitto.conf.tmpl"), {
        "host": settings.mqtt_host,
        "port": settings.mqtt_port,
        "data_dir": p.data,
        "password_file": p.passwd,
        "acl_file": p.acl,
        "max_queued_messages": settings.mqtt_max_queued_messages,
        # As root mosquitto drops to its own user; it then re-reads these files on SIGHUP.
        "user_line": f"user {_OS_USER}" if as_root else "",
    })


def render_acl(settings: Settings) -> str:
    return render_template(("mosquitto", "acl.tmpl"), {
        "bridge_user": settings.mqtt_bridge_user,
        "notifier_user": settings.mqtt_notifier_user,
        "admin_user": settings.mqtt_admin_user,
        "telemetry_prefix": settings.mqtt_topic_prefix,
        "notify_prefix": NOTIFY_PREFIX,
    })


def _write_private(path: Path, text: str) -> bool:
    changed = write_if_changed(path, text, 0o600)
    chown_to(path, _OS_USER)
    return changed


def _sync_service_accounts(p: Paths, accounts: dict[str, str]) -> bool:
    entries = parse_passwd(p.passwd.read_text()) if p.passwd.exists() else {}
    changed = False
    for user, password in accounts.items():
        if user not in entries or not verify_password(entries[user], password):
            entries[user] = hash_password(user, password)
            changed = True
    if changed or not p.passwd.exists():
        _write_private(p.passwd, format_passwd(entries))
    return changed


# --------------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------------


def version() -> str:
    try:
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return "not installed"
    match = re.search(r"mosquitto version (\S+)", out)
    return match.group(1) if match else "unknown"


def install(settings: Settings, apt_log: Path) -> list[str]:
    installed = apt_install(PACKAGES, apt_log, SERVICE)
    if "mosquitto" in installed and shutil.which("systemctl") and Path("/run/systemd/system").exists():
        # The package enables and starts a system broker on port 1883; the stack runs its own.
        subprocess.run(["systemctl", "disable", "--now", "mosquitto.service"], capture_output=True)
    return installed


def _healthy(settings: Settings, user: str, password: str) -> bool:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    result: dict[str, object] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-health-{secrets.token_hex(4)}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        result["rc"] = reason

    client.on_connect = on_connect
    try:
        client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10)
        deadline = time.monotonic() + 3
        while "rc" not in result and time.monotonic() < deadline:
            client.loop(timeout=0.1)
        client.disconnect()
    except OSError:
        return False
    rc = result.get("rc")
    return rc is not None and not getattr(rc, "is_failure", True)


def ensure_up(settings: Settings, secrets_: dict[str, str]) -> str:
    """Render config, sync service accounts, start or reload the broker; return what happened."""
    p = paths(settings)
    for d in (p.root, p.data, p.log.parent):
        d.mkdir(parents=True, exist_ok=True)
    as_root = is_root()
    if as_root:
        check_traversable(p.root, SERVICE, _OS_USER)
    chown_to(p.root, _OS_USER)
    chown_to(p.data, _OS_USER, recursive=True)
    conf_changed = write_if_changed(p.conf, render_conf(settings, p, as_root))
    acl_changed = _write_private(p.acl, render_acl(settings))
    with _lock(p):
        pw_changed = _sync_service_accounts(p, service_accounts(settings, secrets_))
    if not p.registry.exists():
        write_if_changed(p.registry, format_registry({}))

    admin = (settings.mqtt_admin_user, secrets_["mqtt_admin_password"])
    pid = read_pid(p.pid, str(p.conf))
    if pid is not None:
        if conf_changed:
            stop(settings)
            pid = None
        elif acl_changed or pw_changed:
            os.kill(pid, signal.SIGHUP)
    if pid is not None:
        if wait_until(lambda: _healthy(settings, *admin), 10):
            return "running"
        raise StackError(SERVICE, f"pid {pid} runs but refuses svc-admin on port {settings.mqtt_port}", p.log)

    if port_open(settings.mqtt_host, settings.mqtt_port):
        raise StackError(SERVICE, f"port {settings.mqtt_host}:{settings.mqtt_port} is held by another "
                         "process (the system mosquitto: `systemctl disable --now mosquitto`; or another "
                         "checkout's stack: `fleetwatch stack down` there); or set FLEETWATCH_MQTT_PORT")
    with open(p.log, "a") as fh:
        fh.write(f"\n--- fleetwatch stack: starting mosquitto {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    new_pid = spawn(["mosquitto", "-c", str(p.conf)], p.log, p.pid)
    if not wait_until(lambda: _healthy(settings, *admin), 15, alive=lambda: pid_alive(new_pid)):
        state = "exited" if not pid_alive(new_pid) else "does not accept svc-admin"
        raise StackError(SERVICE, f"broker {state} after start on port {settings.mqtt_port}", p.log)
    return "started"


def stop(settings: Settings) -> bool:
    p = paths(settings)
    pid = read_pid(p.pid, str(p.conf))
    if pid is None:
        return False
    stop_pid(pid, timeout=10)
    p.pid.unlink(missing_ok=True)
    return True


def reload(settings: Settings) -> None:
    pid = read_pid(paths(settings).pid, str(paths(settings).conf))
    if pid is not None:
        os.kill(pid, signal.SIGHUP)


def _lock(p: Paths) -> contextlib.AbstractContextManager[None]:
    return file_lock(p.root.parent / "locks" / "mosquitto-accounts.lock")


def add_devices(settings: Settings, rows: Iterable[tuple[str, str, str]]) -> int:
    """Add or update device accounts and the registry; reload a running broker. Returns the count."""
    p = paths(settings)
    reserved = (settings.mqtt_bridge_user, settings.mqtt_notifier_user, settings.mqtt_admin_user)
    devices = validate_devices(rows, reserved)
    p.root.mkdir(parents=True, exist_ok=True)
    with _lock(p):
        _add_devices_locked(settings, p, devices)
    return len(devices)


def _add_devices_locked(settings: Settings, p: Paths, devices: list[tuple[str, str, str]]) -> None:
    entries = parse_passwd(p.passwd.read_text()) if p.passwd.exists() else {}
    registry = read_registry(p.registry)
    for device_id, vehicle_id, password in devices:
        if device_id not in entries or not verify_password(entries[device_id], password):
            entries[device_id] = hash_password(device_id, password)
        registry[device_id] = vehicle_id
    _write_private(p.passwd, format_passwd(entries))
    write_if_changed(p.registry, format_registry(registry))
    if read_pid(p.pid, str(p.conf)) is not None and devices:
        reload(settings)
        # SIGHUP is handled asynchronously: callers expect the new accounts to work on return.
        device_id, _, password = devices[-1]
        if not wait_until(lambda: _healthy(settings, device_id, password), 10):
            raise StackError(SERVICE, f"reloaded broker does not accept new device {device_id!r}", p.log)


def remove_devices(settings: Settings, device_ids: Iterable[str]) -> int:
    """Drop device accounts and their registry rows; reload a running broker. Returns how many existed."""
    p = paths(settings)
    reserved = {settings.mqtt_bridge_user, settings.mqtt_notifier_user, settings.mqtt_admin_user}
    ids = list(device_ids)
    for device_id in ids:
        if device_id in reserved:
            raise DeviceRowError(0, "device_id", device_id, "service accounts cannot be removed")
    with _lock(p):
        entries = parse_passwd(p.passwd.read_text()) if p.passwd.exists() else {}
        registry = read_registry(p.registry)
        removed = 0
        for device_id in ids:
            removed += int(entries.pop(device_id, None) is not None)
            registry.pop(device_id, None)
        _write_private(p.passwd, format_passwd(entries))
        write_if_changed(p.registry, format_registry(registry))
        reload(settings)
    return removed


def status(settings: Settings) -> ServiceStatus:
    p = paths(settings)
    pid = read_pid(p.pid, str(p.conf))
    if pid is not None:
        state = "running"
    elif port_open(settings.mqtt_host, settings.mqtt_port):
        state = "foreign"
    else:
        state = "stopped"
    return ServiceStatus(SERVICE, state, settings.mqtt_port, version(), p.data, p.log, pid)
