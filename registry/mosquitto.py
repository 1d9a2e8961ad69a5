"""Mosquitto accounts derived from the registry: dynamic-security roles, clients and control commands.

Mosquitto's acl_file accepts every SUBSCRIBE and checks read access only at delivery: a device
that joins the bridge's shared-subscription group makes the broker drop that group's share of
messages. The dynamic-security plugin (in Debian's package) refuses a SUBSCRIBE it does not
allow, with a reason code. Its ACLs belong to roles and 2.0.11 does not expand %u in them, so
each device gets a one-line role of its own: publish to its telemetry topic, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Iterable
from typing import Any

from fleetwatch.settings import Settings

DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1"
DEVICE_ROLE_PREFIX = "device-"
#: What an account may do unless one of its roles says otherwise (the plugin's own defaults,
#: spelled out): no publishing, no subscribing; delivery is governed by the subscription.
DEFAULT_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": True,
    "subscribe": False,
    "unsubscribe": True,
}

# Mosquitto 2's own format: base64 PBKDF2-HMAC-SHA512 with a random salt.
_PW_ITERATIONS = 101
_PW_SALT_BYTES = 12

#: Commands per control message. The plugin rewrites its whole file after each change and
#: answers a message only when done with all of it (the broker does nothing else meanwhile):
#: small messages keep the broker responsive and the wait per answer short. 1,000 devices
#: (3,000 commands) took ~13 s of broker CPU.
_CONTROL_CHUNK = 60


class AccountsError(RuntimeError):
    """The broker refused or did not answer an account change."""


def hash_password(
    password: str, salt: bytes | None = None, iterations: int = _PW_ITERATIONS
) -> dict[str, object]:
    """The plugin's password fields: base64 PBKDF2-HMAC-SHA512 digest, base64 salt, iterations."""
    salt = salt if salt is not None else secrets.token_bytes(_PW_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def verify_password(client: dict[str, Any], password: str) -> bool:
    """Whether a plugin client entry accepts ``password``."""
    try:
        digest = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(client["salt"]), int(client["iterations"])
        )
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
        settings.mqtt_notifier_user: [_acl("publishClientSend", f"{settings.mqtt_notify_prefix}/#")],
        # Tests and load tools; also the one account that manages accounts at runtime.
        settings.mqtt_admin_user: [
            _acl("publishClientSend", "fleetwatch/#"),
            _acl("subscribePattern", "fleetwatch/#"),
            _acl("subscribePattern", "$share/+/fleetwatch/#"),
            _acl("publishClientSend", control),
            _acl("subscribePattern", control),
            _acl("publishClientReceive", control),
        ],
    }


def reserved_names(settings: Settings) -> set[str]:
    """Account names a device may not take."""
    return set(service_roles(settings))


def device_role(settings: Settings, device_id: str) -> dict[str, Any]:
    return {
        "rolename": DEVICE_ROLE_PREFIX + device_id,
        "acls": [_acl("publishClientSend", settings.telemetry_topic(device_id))],
    }


def _client(username: str, password: str, role: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """A client entry; an unchanged password keeps its hash, so an unchanged config stays byte-equal."""
    if previous is not None and verify_password(previous, password):
        hashed = {k: previous[k] for k in ("password", "salt", "iterations")}
    else:
        hashed = hash_password(password)
    return {"username": username, **hashed, "roles": [{"rolename": role}]}


def render_dynsec(
    settings: Settings, accounts: dict[str, str], current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The plugin's whole config for a broker that is not running: service accounts (``accounts``,
    user -> password) and roles from code; every other account and role kept from ``current``."""
    current = current or {}
    clients = {c["username"]: c for c in current.get("clients", [])}
    roles = {r["rolename"]: r for r in current.get("roles", [])}
    for user, password in accounts.items():
        clients[user] = _client(user, password, user, clients.get(user))
    for name, acls in service_roles(settings).items():
        roles[name] = {"rolename": name, "acls": acls}
    return {
        "clients": list(clients.values()),
        "roles": list(roles.values()),
        "groups": [],
        "defaultACLAccess": DEFAULT_ACCESS,
    }


def device_commands(settings: Settings, devices: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Control commands that add or update device accounts (device_id, password)."""
    commands: list[dict[str, Any]] = []
    for device_id, password in devices:
        role = device_role(settings, device_id)
        commands += [
            {"command": "createRole", **role},
            {
                "command": "createClient",
                "username": device_id,
                "password": password,
                "roles": [{"rolename": role["rolename"]}],
            },
            # createClient refuses an existing account: this makes a re-added device's password current.
            {"command": "setClientPassword", "username": device_id, "password": password},
        ]
    return commands


def removal_commands(settings: Settings, device_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Control commands that delete device accounts and their roles."""
    return [
        command
        for device_id in device_ids
        for command in (
            {"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": device_role(settings, device_id)["rolename"]},
        )
    ]


def control(settings: Settings, commands: list[dict[str, Any]], timeout_s: float = 60.0) -> None:
    """Run dynamic-security commands on the running broker as svc-admin; raise AccountsError on a refusal.

    The plugin never re-reads its file while running (not even on SIGHUP), so accounts change
    through its control topic. "already exists" / "not found" replies are the idempotent cases.
    Commands carry passwords: nothing here logs them.
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
    where = f"Mosquitto at {settings.mqtt_host}:{settings.mqtt_port}"

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with answered:
            for reply in json.loads(msg.payload).get("responses", []):
                if str(reply.get("correlationData", "")).startswith(tag):
                    replies[reply["correlationData"]] = reply
            answered.notify_all()

    def wait_for(count: int) -> None:
        with answered:
            if not answered.wait_for(lambda: len(replies) >= count, timeout_s):
                raise AccountsError(
                    f"{where}: dynamic-security did not answer within {timeout_s:g} s "
                    f"({len(replies)} of {len(commands)} commands answered)"
                )

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-dynsec-{tag}", protocol=mqtt.MQTTv5)
    client.username_pw_set(settings.mqtt_admin_user, settings.secret("mqtt_admin_password"))
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    try:
        client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=60)
    except OSError as exc:
        raise AccountsError(f"{where} is not reachable ({exc}): device accounts not changed") from None
    client.loop_start()
    try:
        client.subscribe(DYNSEC_TOPIC + "/response", qos=1)
        if not subscribed.wait(timeout_s):
            raise AccountsError(
                f"{where}: no SUBACK for the dynamic-security response topic "
                f"(is {settings.mqtt_admin_user}'s password right?)"
            )
        for start in range(0, len(commands), _CONTROL_CHUNK):
            chunk = commands[start : start + _CONTROL_CHUNK]
            client.publish(DYNSEC_TOPIC, json.dumps({"commands": chunk}), qos=1)
            wait_for(start + len(chunk))
    finally:
        client.disconnect()
        client.loop_stop()
    refused = [
        f"{r['command']}: {r['error']}"
        for r in replies.values()
        if r.get("error") and not re.search(r"already exists|not found", r["error"])
    ]
    if refused:
        raise AccountsError(f"{where}: dynamic-security refused: " + "; ".join(refused[:5]))
