"""Mosquitto accounts derived from the registry: password hashes, roles, control commands (no broker)."""

from __future__ import annotations

import base64
import re
from typing import Any

from fleetwatch.settings import Settings
from registry.mosquitto import (
    device_commands,
    device_role,
    hash_password,
    removal_commands,
    render_dynsec,
    verify_password,
)

# Written by the real `mosquitto_ctrl dynsec init FILE admin adminpw` (2.0.11).
MOSQUITTO_CTRL_CLIENT = {
    "username": "admin",
    "password": "7MG5AHkwTjlEIl4+korrxYtpAeqtsByyaL+GFY7h91hdudnvEo1jL8C/GNUC/iMADbvPToYRfrx3NK8cPGJ8OQ==",
    "salt": "ey3AMfLNAu2a2bHl",
    "iterations": 101,
}



def test_hash_password_matches_mosquitto_ctrl() -> None:
    salt = base64.b64decode(MOSQUITTO_CTRL_CLIENT["salt"])  # type: ignore[arg-type]
    hashed = hash_password("adminpw", salt=salt)
    assert hashed == {k: MOSQUITTO_CTRL_CLIENT[k] for k in ("password", "salt", "iterations")}


def test_verify_password_accepts_right_and_rejects_wrong() -> None:
    assert verify_password(MOSQUITTO_CTRL_CLIENT, "adminpw")
    assert not verify_password(MOSQUITTO_CTRL_CLIENT, "adminpw2")
    assert not verify_password({"username": "x"}, "adminpw")


def test_fresh_hashes_use_random_salt() -> None:
    a = hash_password("pw")
    b = hash_password("pw")
    assert a["salt"] != b["salt"]
    assert re.fullmatch(r"[A-Za-z0-9+/=]{88}", str(a["password"]))
    assert verify_password(a, "pw")


def _acls(config: dict[str, Any], role: str) -> set[tuple[str, str]]:
    (entry,) = [r for r in config["roles"] if r["rolename"] == role]
    return {(a["acltype"], a["topic"]) for a in entry["acls"] if a["allow"]}


def test_dynsec_config_gives_each_account_only_what_it_needs() -> None:
    settings = Settings()
    accounts = {"svc-bridge": "b", "svc-notifier": "n", "svc-admin": "a"}
    config = render_dynsec(settings, accounts)
    config["roles"].append(device_role(settings, "dev-1"))
    # Nothing is allowed unless a role says so: a device can publish to its own topic and
    # subscribe to nothing (a SUBSCRIBE is refused at SUBSCRIBE time, with a reason code).
    assert config["defaultACLAccess"]["subscribe"] is False
    assert config["defaultACLAccess"]["publishClientSend"] is False
    assert _acls(config, "device-dev-1") == {("publishClientSend", "fleetwatch/v1/telemetry/dev-1")}
    assert _acls(config, "svc-bridge") == {("subscribePattern", "$share/+/fleetwatch/v1/telemetry/+")}
    assert _acls(config, "svc-notifier") == {("publishClientSend", "fleetwatch/v1/notify/#")}
    assert ("subscribePattern", "$CONTROL/dynamic-security/#") in _acls(config, "svc-admin")
    clients = {c["username"]: c for c in config["clients"]}
    assert verify_password(clients["svc-bridge"], "b")
    assert set(clients) == {"svc-bridge", "svc-notifier", "svc-admin"}


def test_dynsec_config_keeps_unchanged_hashes_and_device_accounts() -> None:
    settings = Settings()
    accounts = {"svc-bridge": "b", "svc-notifier": "n", "svc-admin": "a"}
    device = {"username": "dev-1", **hash_password("p1"), "roles": [{"rolename": "device-dev-1"}]}
    current = {"clients": [device], "roles": [device_role(settings, "dev-1")]}
    first = render_dynsec(settings, accounts, current)
    again = render_dynsec(settings, accounts, first)
    assert again == first  # same passwords: byte-equal file, so `stack up` restarts nothing
    changed = render_dynsec(settings, {**accounts, "svc-bridge": "b2"}, first)
    clients = {c["username"]: c for c in changed["clients"]}
    assert verify_password(clients["svc-bridge"], "b2")
    assert verify_password(clients["dev-1"], "p1")  # the plugin's device accounts survive a restart


def test_device_commands_create_or_update_an_account_with_its_role() -> None:
    commands = device_commands(Settings(), [("dev-1", "p1")])
    assert [c["command"] for c in commands] == ["createRole", "createClient", "setClientPassword"]
    assert commands[0]["acls"][0]["topic"] == "fleetwatch/v1/telemetry/dev-1"
    assert commands[1]["roles"] == [{"rolename": "device-dev-1"}]



def test_removal_commands_delete_the_account_and_its_role() -> None:
    assert removal_commands(Settings(), ["dev-1"]) == [
        {"command": "deleteClient", "username": "dev-1"},
        {"command": "deleteRole", "rolename": "device-dev-1"},
    ]
