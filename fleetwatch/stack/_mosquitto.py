"""Mosquitto: our own broker process (not the system service), its config, service accounts and
the CA + server certificate of its TLS listener.

Device accounts are product data: `fleetwatch devices add` (registry/) creates them on the
running broker; the plugin keeps them in its file across restarts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetwatch.settings import Settings
from registry.mosquitto import render_dynsec, service_roles

from ._common import (
    ServiceStatus,
    StackError,
    apt_install,
    check_traversable,
    chown_to,
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
_OS_USER = "mosquitto"


@dataclass(frozen=True, slots=True)
class Paths:
    root: Path
    conf: Path
    dynsec: Path
    data: Path
    pid: Path
    log: Path
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
        tls=stack / "tls",
    )


# --------------------------------------------------------------------------------------------
# config (accounts and rights come from the product: registry.mosquitto)
# --------------------------------------------------------------------------------------------

DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"


def read_dynsec(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


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
    admin = (settings.mqtt_admin_user, secrets_["mqtt_admin_password"])
    # `stack up` holds its own lock (locks/up.lock): nothing else edits the plugin's file.
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
