"""Mosquitto: our own broker process (not the system service), its accounts and rights, devices,
and the CA + server certificate of its TLS listener."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    run,
    spawn,
    stop_pid,
    wait_until,
    write_if_changed,
)

SERVICE = "mosquitto"
PACKAGES = ("mosquitto", "mosquitto-clients", "kcat", "openssl")
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
    dynsec: Path
    data: Path
    pid: Path
    log: Path
    registry: Path
    tls: Path

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.tls / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.tls / "server.key"


def paths(settings: Settings) -> Paths:
    stack = settings.stack_dir.resolve()
    root = stack / "mosquitto"
    return Paths(
        root=root,
        conf=root / "mosquitto.conf",
        dynsec=root / "dynamic-security.json",
        data=root / "data",
        pid=root / "mosquitto.pid",
        log=stack / "logs" / "mosquitto.log",
        registry=stack / "registry.csv",
        tls=stack / "tls",
    )


# --------------------------------------------------------------------------------------------
# accounts and rights: the dynamic-security plugin's config (pure)
# --------------------------------------------------------------------------------------------
#
# Mosquitto's acl_file accepts every SUBSCRIBE and checks read access only at delivery: a device
# that joins the bridge's shared-subscription group makes the broker drop that group's share of
# messages. The dynamic-security plugin (in Debian's package) refuses a SUBSCRIBE it does not
# allow, with a reason code. Its ACLs belong to roles and 2.0.11 does not expand %u in them, so
# each device gets a one-line role of its own: publish to its telemetry topic, nothing else.

DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1"
_DEVICE_ROLE = "device-"
#: What an account may do unless one of its roles says otherwise (the plugin's own defaults,
#: spelled out): no publishing, no subscribing; delivery is governed by the subscription.
DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": True, "subscribe": False,
                  "unsubscribe": True}


def hash_password(password: str, salt: bytes | None = None, iterations: int = _PW_ITERATIONS
                  ) -> dict[str, object]:
    """The plugin's password fields: base64 PBKDF2-HMAC-SHA512 digest, base64 salt, iterations."""
    salt = salt if salt is not None else secrets.token_bytes(_PW_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def verify_password(client: dict[str, Any], password: str) -> bool:
    """Whether a plugin client entry accepts ``password``."""
    try:
        digest = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(client["salt"]),
                                     int(client["iterations"]))
        return hmac.compare_digest(digest, base64.b64decode(client["password"]))
    except (KeyError, TypeError, ValueError):
        return False


def _acl(acltype: str, topic: str) -> dict[str, object]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def service_roles(settings: Settings) -> dict[str, list[dict[str, object]]]:
    """Role name (= service account name) -> its ACLs; every other SUBSCRIBE is refused."""
    telemetry = settings.mqtt_topic_prefix
    control = "$CONTROL/dynamic-security/#"  # commands and their responses
    return {
        # Only the bridge group's shared subscription (a shared filter is matched whole).
        settings.mqtt_bridge_user: [_acl("subscribePattern", f"$share/+/{telemetry}/+")],
        settings.mqtt_notifier_user: [_acl("publishClientSend", f"{NOTIFY_PREFIX}/#")],
        # Tests and load tools; also the one account that manages accounts at runtime.
        settings.mqtt_admin_user: [
            _acl("publishClientSend", "fleetwatch/#"), _acl("subscribePattern", "fleetwatch/#"),
            _acl("subscribePattern", "$share/+/fleetwatch/#"),
            _acl("publishClientSend", control), _acl("subscribePattern", control),
            _acl("publishClientReceive", control),
        ],
    }


def device_role(settings: Settings, device_id: str) -> dict[str, Any]:
    return {"rolename": _DEVICE_ROLE + device_id,
            "acls": [_acl("publishClientSend", settings.telemetry_topic(device_id))]}


def _client(username: str, password: str, role: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """A client entry; an unchanged password keeps its hash, so an unchanged config stays byte-equal."""
    if previous is not None and verify_password(previous, password):
        hashed = {k: previous[k] for k in ("password", "salt", "iterations")}
    else:
        hashed = hash_password(password)
    return {"username": username, **hashed, "roles": [{"rolename": role}]}


def render_dynsec(settings: Settings, accounts: dict[str, str], current: dict[str, Any] | None = None,
                  devices: Iterable[tuple[str, str]] = (), remove: Iterable[str] = ()) -> dict[str, Any]:
    """The whole plugin config: service accounts and roles from code, device accounts kept from
    ``current`` plus ``devices`` (device_id, password) minus ``remove``."""
    current = current or {}
    clients = {c["username"]: c for c in current.get("clients", [])}
    roles = {r["rolename"]: r for r in current.get("roles", [])}
    for user, password in accounts.items():
        clients[user] = _client(user, password, user, clients.get(user))
    for name, acls in service_roles(settings).items():
        roles[name] = {"rolename": name, "acls": acls}
    for device_id, password in devices:
        role = device_role(settings, device_id)
        clients[device_id] = _client(device_id, password, role["rolename"], clients.get(device_id))
        roles[role["rolename"]] = role
    for device_id in remove:
        clients.pop(device_id, None)
        roles.pop(_DEVICE_ROLE + device_id, None)
    return {"clients": list(clients.values()), "roles": list(roles.values()), "groups": [],
            "defaultACLAccess": DEFAULT_ACCESS}


def read_dynsec(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


def device_commands(settings: Settings, devices: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Plugin control commands that add or update device accounts on a running broker."""
    commands: list[dict[str, Any]] = []
    for device_id, password in devices:
        role = device_role(settings, device_id)
        commands += [
            {"command": "createRole", **role},
            {"command": "createClient", "username": device_id, "password": password,
             "roles": [{"rolename": role["rolename"]}]},
            # createClient refuses an existing account: this makes a re-added device's password current.
            {"command": "setClientPassword", "username": device_id, "password": password},
        ]
    return commands


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


def plugin_path() -> Path:
    """Debian's dynamic-security plugin (multiarch directory under /usr/lib)."""
    lib = Path("/usr/lib")
    found = sorted(lib.glob(f"*/{DYNSEC_PLUGIN}")) or sorted(lib.glob(DYNSEC_PLUGIN))
    if not found:
        raise StackError(SERVICE, f"{DYNSEC_PLUGIN} not found under /usr/lib (mosquitto's package has it)")
    return found[0]


def server_names(settings: Settings) -> list[str]:
    """subjectAltName entries of the broker's certificate: what terminals may dial."""
    names = ["localhost", "127.0.0.1", settings.mqtt_host, socket.gethostname(), socket.getfqdn()]
    entries = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return entries


def ensure_tls(settings: Settings, log: Path) -> list[str]:
    """A CA (kept once made: terminals are flashed with it) and a server certificate it signs for
    ``server_names``; the server certificate is remade when those change. Returns what was made."""
    p = paths(settings)
    p.tls.mkdir(parents=True, exist_ok=True)
    p.tls.chmod(0o755)  # mosquitto's OS user reads its certificate and key here
    ca_key, made = p.tls / "ca.key", []
    if not (p.ca_cert.exists() and ca_key.exists()):
        run(["openssl", "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
             "-keyout", str(ca_key), "-out", str(p.ca_cert), "-subj", "/O=fleetwatch/CN=fleetwatch MQTT CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            SERVICE, "making the MQTT CA", log)
        made.append("CA")
    ca_key.chmod(0o600)
    p.ca_cert.chmod(0o644)
    names = ",".join(server_names(settings))
    stamp = p.tls / "server.names"
    fresh = (p.server_cert.exists() and p.server_key.exists() and stamp.exists()
             and stamp.read_text().strip() == names
             and p.server_cert.stat().st_mtime >= p.ca_cert.stat().st_mtime)
    if not fresh:
        csr, ext = p.tls / "server.csr", p.tls / "server.ext"
        ext.write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(p.server_key),
             "-out", str(csr), "-subj", f"/O=fleetwatch/CN={settings.mqtt_host}"], SERVICE,
            "making the MQTT server key", log)
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(p.ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-sha256", "-days", "825", "-extfile", str(ext), "-out", str(p.server_cert)],
            SERVICE, "signing the MQTT server certificate", log)
        csr.unlink()
        ext.unlink()
        stamp.write_text(names + "\n")
        made.append(f"server certificate for {names}")
    p.server_key.chmod(0o600)
    chown_to(p.server_key, _OS_USER)
    return made


def render_conf(settings: Settings, p: Paths, as_root: bool, plugin: Path) -> str:
    cert = p.server_cert.read_bytes() if p.server_cert.exists() else b""
    return render_template(("mosquitto", "mosquitto.conf.tmpl"), {
        "host": settings.mqtt_host,
        "port": settings.mqtt_port,
        "tls_port": settings.mqtt_tls_port,
        "tls_bind": settings.mqtt_tls_bind,
        "cafile": p.ca_cert,
        "certfile": p.server_cert,
        "keyfile": p.server_key,
        "cert_digest": hashlib.sha256(cert).hexdigest()[:16],
        "data_dir": p.data,
        "plugin": plugin,
        "dynsec_file": p.dynsec,
        "max_queued_messages": settings.mqtt_max_queued_messages,
        "autosave_interval": settings.mqtt_autosave_interval,
        # As root mosquitto drops to its own user, which must be able to rewrite the plugin's file.
        "user_line": f"user {_OS_USER}" if as_root else "",
    })


def _write_private(path: Path, config: dict[str, Any]) -> bool:
    changed = write_if_changed(path, json.dumps(config, indent=1, ensure_ascii=False) + "\n", 0o600)
    chown_to(path, _OS_USER)
    return changed


def _service_part(settings: Settings, config: dict[str, Any]) -> tuple[object, ...]:
    """What `stack up` owns in the plugin's file (the plugin may add keys of its own when it saves)."""
    names = set(service_roles(settings))
    clients = sorted((c["username"], c.get("password"), [r["rolename"] for r in c.get("roles", [])])
                     for c in config.get("clients", []) if c["username"] in names)
    roles = sorted((r["rolename"], sorted((a["acltype"], a["topic"], a.get("allow")) for a in r["acls"]))
                   for r in config.get("roles", []) if r["rolename"] in names)
    return (clients, roles, config.get("defaultACLAccess"))


#: Commands per control message. The plugin rewrites its whole file after each change and
#: answers a message only when done with all of it (the broker does nothing else meanwhile):
#: small messages keep the broker responsive and the wait per answer short. 1,000 devices
#: (3,000 commands) took ~13 s of broker CPU.
_CONTROL_CHUNK = 60


def control(settings: Settings, commands: list[dict[str, Any]], timeout_s: float = 60.0) -> None:
    """Run dynamic-security commands on the running broker as svc-admin; raise on any refusal.

    The plugin never re-reads its file while running (not even on SIGHUP), so accounts change
    through its control topic. "already exists" / "not found" replies are the idempotent cases.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if not commands:
        return
    tag = secrets.token_hex(8)
    for number, command in enumerate(commands):
        command["correlationData"] = f"{tag}-{number}"
    replies: dict[str, dict[str, Any]] = {}
    answered = threading.Condition()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with answered:
            for reply in json.loads(msg.payload).get("responses", []):
                if str(reply.get("correlationData", "")).startswith(tag):
                    replies[reply["correlationData"]] = reply
            answered.notify_all()

    def wait_for(count: int, what: str) -> None:
        with answered:
            if not answered.wait_for(lambda: len(replies) >= count, timeout_s):
                raise StackError(SERVICE, f"{what} within {timeout_s:g} s ({len(replies)} of "
                                 f"{len(commands)} commands answered)", paths(settings).log)

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-dynsec-{tag}", protocol=mqtt.MQTTv5)
    client.username_pw_set(settings.mqtt_admin_user, settings.secret("mqtt_admin_password"))
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=60)
    client.loop_start()
    try:
        client.subscribe(DYNSEC_TOPIC + "/response", qos=1)
        if not subscribed.wait(timeout_s):
            raise StackError(SERVICE, "no SUBACK for the dynamic-security response topic")
        for start in range(0, len(commands), _CONTROL_CHUNK):
            chunk = commands[start : start + _CONTROL_CHUNK]
            client.publish(DYNSEC_TOPIC, json.dumps({"commands": chunk}), qos=1)
            wait_for(start + len(chunk), "dynamic-security did not answer")
    finally:
        client.disconnect()
        client.loop_stop()
    refused = [f"{r['command']}: {r['error']}" for r in replies.values()
               if r.get("error") and not re.search(r"already exists|not found", r["error"])]
    if refused:
        raise StackError(SERVICE, "dynamic-security refused: " + "; ".join(refused[:5]), paths(settings).log)


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
    """Render config and accounts, start the broker (restart it if they changed); return what happened."""
    p = paths(settings)
    for d in (p.root, p.data, p.log.parent):
        d.mkdir(parents=True, exist_ok=True)
    as_root = is_root()
    if as_root:
        check_traversable(p.root, SERVICE, _OS_USER)
    chown_to(p.root, _OS_USER)
    chown_to(p.data, _OS_USER, recursive=True)
    conf_changed = write_if_changed(p.conf, render_conf(settings, p, as_root, plugin_path()))
    if not p.registry.exists():
        write_if_changed(p.registry, format_registry({}))
    admin = (settings.mqtt_admin_user, secrets_["mqtt_admin_password"])
    with _lock(p):
        current = read_dynsec(p.dynsec)
        wanted = render_dynsec(settings, service_accounts(settings, secrets_), current)
        pid = read_pid(p.pid, str(p.conf))
        # While it runs the plugin owns its file: a changed service account or role means a
        # restart (clean: sessions and queued messages are saved and restored).
        if pid is not None and (conf_changed or _service_part(settings, wanted) !=
                                _service_part(settings, current)):
            stop(settings)
            pid = None
        if pid is not None:
            if wait_until(lambda: _healthy(settings, *admin), 10):
                return "running"
            raise StackError(SERVICE, f"pid {pid} runs but refuses svc-admin on port {settings.mqtt_port}",
                             p.log)
        _write_private(p.dynsec, wanted)
        busy = next((port for port in (settings.mqtt_port, settings.mqtt_tls_port)
                     if port_open(settings.mqtt_host, port)), None)
        if busy is not None:
            raise StackError(SERVICE, f"port {settings.mqtt_host}:{busy} is held by another "
                             "process (the system mosquitto: `systemctl disable --now mosquitto`; or another "
                             "checkout's stack: `fleetwatch stack down` there); or set FLEETWATCH_MQTT_PORT "
                             "/ FLEETWATCH_MQTT_TLS_PORT")
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


def _lock(p: Paths) -> contextlib.AbstractContextManager[None]:
    return file_lock(p.root.parent / "locks" / "mosquitto-accounts.lock")


def _reserved(settings: Settings) -> set[str]:
    return {settings.mqtt_bridge_user, settings.mqtt_notifier_user, settings.mqtt_admin_user}


def add_devices(settings: Settings, rows: Iterable[tuple[str, str, str]]) -> int:
    """Add or update device accounts (each with its own publish-only role) and the registry.

    On a running broker the accounts work when this returns; otherwise the plugin's file is
    edited and `stack up` starts the broker with them. Returns the count.
    """
    p = paths(settings)
    devices = validate_devices(rows, _reserved(settings))
    p.root.mkdir(parents=True, exist_ok=True)
    credentials = [(device_id, password) for device_id, _, password in devices]
    with _lock(p):
        if read_pid(p.pid, str(p.conf)) is not None:
            control(settings, device_commands(settings, credentials))
        else:
            _write_private(p.dynsec, render_dynsec(settings, {}, read_dynsec(p.dynsec), devices=credentials))
        registry = read_registry(p.registry)
        registry.update((device_id, vehicle_id) for device_id, vehicle_id, _ in devices)
        write_if_changed(p.registry, format_registry(registry))
    return len(devices)


def remove_devices(settings: Settings, device_ids: Iterable[str]) -> int:
    """Drop device accounts, their roles and registry rows. Returns how many were registered."""
    p = paths(settings)
    ids = list(device_ids)
    for device_id in ids:
        if device_id in _reserved(settings):
            raise DeviceRowError(0, "device_id", device_id, "service accounts cannot be removed")
    with _lock(p):
        if read_pid(p.pid, str(p.conf)) is not None:
            control(settings, [command for device_id in ids for command in (
                {"command": "deleteClient", "username": device_id},
                {"command": "deleteRole", "rolename": device_role(settings, device_id)["rolename"]})])
        else:
            _write_private(p.dynsec, render_dynsec(settings, {}, read_dynsec(p.dynsec), remove=ids))
        registry = read_registry(p.registry)
        removed = sum(registry.pop(device_id, None) is not None for device_id in ids)
        write_if_changed(p.registry, format_registry(registry))
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
