"""Pure pieces of the stack: templates, mosquitto accounts and rights, device rows, Kafka/PG config."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.settings import Settings
from fleetwatch.stack import _kafka, _mosquitto, _postgres
from fleetwatch.stack._common import render
from fleetwatch.stack._mosquitto import DeviceRowError

# Written by the real `mosquitto_ctrl dynsec init FILE admin adminpw` (2.0.11).
MOSQUITTO_CTRL_CLIENT = {
    "username": "admin",
    "password": "7MG5AHkwTjlEIl4+korrxYtpAeqtsByyaL+GFY7h91hdudnvEo1jL8C/GNUC/iMADbvPToYRfrx3NK8cPGJ8OQ==",
    "salt": "ey3AMfLNAu2a2bHl",
    "iterations": 101,
}


def test_render_fills_placeholders() -> None:
    assert render("a={{a}} b={{b}}", {"a": 1, "b": "x"}) == "a=1 b=x"


def test_render_rejects_missing_and_unused_values() -> None:
    with pytest.raises(ValueError, match="without a value: b"):
        render("{{a}} {{b}}", {"a": 1})
    with pytest.raises(ValueError, match="not used by the template: c"):
        render("{{a}}", {"a": 1, "c": 2})


def test_hash_password_matches_mosquitto_ctrl() -> None:
    salt = base64.b64decode(MOSQUITTO_CTRL_CLIENT["salt"])  # type: ignore[arg-type]
    hashed = _mosquitto.hash_password("adminpw", salt=salt)
    assert hashed == {k: MOSQUITTO_CTRL_CLIENT[k] for k in ("password", "salt", "iterations")}


def test_verify_password_accepts_right_and_rejects_wrong() -> None:
    assert _mosquitto.verify_password(MOSQUITTO_CTRL_CLIENT, "adminpw")
    assert not _mosquitto.verify_password(MOSQUITTO_CTRL_CLIENT, "adminpw2")
    assert not _mosquitto.verify_password({"username": "x"}, "adminpw")


def test_fresh_hashes_use_random_salt() -> None:
    a = _mosquitto.hash_password("pw")
    b = _mosquitto.hash_password("pw")
    assert a["salt"] != b["salt"]
    assert re.fullmatch(r"[A-Za-z0-9+/=]{88}", str(a["password"]))
    assert _mosquitto.verify_password(a, "pw")


def _acls(config: dict[str, Any], role: str) -> set[tuple[str, str]]:
    (entry,) = [r for r in config["roles"] if r["rolename"] == role]
    return {(a["acltype"], a["topic"]) for a in entry["acls"] if a["allow"]}


def test_dynsec_config_gives_each_account_only_what_it_needs() -> None:
    settings = Settings()
    accounts = {"svc-bridge": "b", "svc-notifier": "n", "svc-admin": "a"}
    config = _mosquitto.render_dynsec(settings, accounts, devices=[("dev-1", "p1")])
    # Nothing is allowed unless a role says so: a device can publish to its own topic and
    # subscribe to nothing (a SUBSCRIBE is refused at SUBSCRIBE time, with a reason code).
    assert config["defaultACLAccess"]["subscribe"] is False
    assert config["defaultACLAccess"]["publishClientSend"] is False
    assert _acls(config, "device-dev-1") == {("publishClientSend", "fleetwatch/v1/telemetry/dev-1")}
    assert _acls(config, "svc-bridge") == {("subscribePattern", "$share/+/fleetwatch/v1/telemetry/+")}
    assert _acls(config, "svc-notifier") == {("publishClientSend", "fleetwatch/v1/notify/#")}
    assert ("subscribePattern", "$CONTROL/dynamic-security/#") in _acls(config, "svc-admin")
    clients = {c["username"]: c for c in config["clients"]}
    assert [r["rolename"] for r in clients["dev-1"]["roles"]] == ["device-dev-1"]
    assert _mosquitto.verify_password(clients["svc-bridge"], "b")
    assert _mosquitto.verify_password(clients["dev-1"], "p1")


def test_dynsec_config_keeps_unchanged_hashes_and_removes_devices() -> None:
    settings = Settings()
    accounts = {"svc-bridge": "b", "svc-notifier": "n", "svc-admin": "a"}
    first = _mosquitto.render_dynsec(settings, accounts, devices=[("dev-1", "p1"), ("dev-2", "p2")])
    again = _mosquitto.render_dynsec(settings, accounts, first)
    assert again == first  # same passwords: byte-equal file, so `stack up` restarts nothing
    changed = _mosquitto.render_dynsec(settings, {**accounts, "svc-bridge": "b2"}, first, remove=["dev-2"])
    clients = {c["username"]: c for c in changed["clients"]}
    assert _mosquitto.verify_password(clients["svc-bridge"], "b2")
    assert "dev-2" not in clients
    assert "device-dev-2" not in {r["rolename"] for r in changed["roles"]}


def test_device_commands_create_or_update_an_account_with_its_role() -> None:
    commands = _mosquitto.device_commands(Settings(), [("dev-1", "p1")])
    assert [c["command"] for c in commands] == ["createRole", "createClient", "setClientPassword"]
    assert commands[0]["acls"][0]["topic"] == "fleetwatch/v1/telemetry/dev-1"
    assert commands[1]["roles"] == [{"rolename": "device-dev-1"}]


def test_validate_devices_last_row_wins() -> None:
    rows = _mosquitto.validate_devices([("d1", "苏A1", "p"), ("d1", "苏A2", "q"), ("d2", "苏A3", "r")])
    assert rows == [("d1", "苏A2", "q"), ("d2", "苏A3", "r")]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (("a/b", "苏A1", "p"), "device_id"),
        (("a+", "苏A1", "p"), "device_id"),
        (("", "苏A1", "p"), "device_id"),
        (("svc-admin", "苏A1", "p"), "device_id"),
        (("d1", "", "p"), "vehicle_id"),
        (("d1", "苏A,1", "p"), "vehicle_id"),
        (("d1", "苏A1", ""), "password"),
    ],
)
def test_validate_devices_names_the_bad_field(row: tuple[str, str, str], field: str) -> None:
    with pytest.raises(DeviceRowError) as info:
        _mosquitto.validate_devices([("ok", "苏A0", "p"), row])
    assert info.value.field == field
    assert info.value.row == 2
    assert f"field {field!r}" in str(info.value)


def test_read_devices_csv_requires_header(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("device_id,vehicle_id,password\nd1,苏A1,p1\n", encoding="utf-8")
    assert _mosquitto.read_devices_csv(good) == [("d1", "苏A1", "p1")]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,plate,pw\nd1,苏A1,p1\n", encoding="utf-8")
    with pytest.raises(DeviceRowError, match="expected header device_id,vehicle_id,password"):
        _mosquitto.read_devices_csv(bad)


def test_registry_format_is_sorted_csv() -> None:
    assert _mosquitto.format_registry({"b": "苏A2", "a": "苏A1"}) == "device_id,vehicle_id\na,苏A1\nb,苏A2\n"


def test_mosquitto_conf(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, mqtt_port=18830, mqtt_max_queued_messages=2_500_000)
    p = _mosquitto.paths(settings)
    plugin = Path("/usr/lib/x/mosquitto_dynamic_security.so")
    conf = _mosquitto.render_conf(settings, p, True, plugin)
    assert "listener 18830 127.0.0.1" in conf
    assert "persistence true" in conf
    assert "autosave_interval 5\n" in conf
    assert f"persistence_location {p.data}/" in conf
    assert "max_queued_messages 2500000" in conf
    default = _mosquitto.render_conf(Settings(stack_dir=tmp_path), p, True, plugin)
    assert "max_queued_messages 1000000" in default
    assert "allow_anonymous false" in conf
    assert f"plugin {plugin}\nplugin_opt_config_file {p.dynsec}\n" in conf
    assert "\nacl_file" not in conf and "\npassword_file" not in conf
    assert "user mosquitto" in conf
    assert "user mosquitto" not in _mosquitto.render_conf(settings, p, False, plugin)


def test_kafka_properties(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, kafka_bootstrap="127.0.0.1:29092", kafka_controller_port=29093)
    text = _kafka.render_properties(settings, tmp_path / "data")
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"


def test_kafka_bootstrap_must_be_host_port() -> None:
    with pytest.raises(_kafka.StackError, match="host:port"):
        _kafka.bootstrap_host_port(Settings(kafka_bootstrap="localhost"))


def test_kafka_cluster_id_is_kafka_uuid_text() -> None:
    cid = _kafka.new_cluster_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_kafka_cluster_id_never_looks_like_an_option() -> None:
    # One random id in 64 started with "-": `kafka-storage format -t -x…` then failed to parse.
    assert not any(_kafka.new_cluster_id().startswith("-") for _ in range(3000))


def test_kafka_pinned_release_is_4x() -> None:
    assert _kafka.pinned_version().startswith("4.")


def test_postgres_conf(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, pg_port=55999)
    conf = _postgres.render_conf(settings, _postgres.paths(settings))
    assert "port = 55999" in conf
    assert "shared_preload_libraries = 'timescaledb'" in conf
    assert f"unix_socket_directories = '{tmp_path.resolve() / 'pg' / 'run'}'" in conf


def test_postgres_bootstrap_sql_quotes_values() -> None:
    server, app = _postgres.bootstrap_sql("fleet\"watch", "pa'ss", "db")
    assert "ALTER ROLE \"fleet\"\"watch\" WITH LOGIN CREATEROLE PASSWORD 'pa''ss';" in server
    assert "WHERE rolname = 'fleet\"watch'" in server
    assert app == "CREATE EXTENSION IF NOT EXISTS timescaledb;\n"


def test_concurrent_add_devices_lose_nothing(tmp_path: Path) -> None:
    """Parallel test sessions register devices at the same time; the file lock keeps every one."""
    import threading

    from fleetwatch.stack import add_devices, remove_devices

    settings = Settings(stack_dir=tmp_path, mqtt_port=1)  # no broker: file updates only

    def worker(n: int) -> None:
        add_devices(settings, [(f"d{n}-{i}", f"V{n}-{i}", f"p{n}{i}") for i in range(5)])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p = _mosquitto.paths(settings)
    clients = {c["username"]: c for c in _mosquitto.read_dynsec(p.dynsec)["clients"]}
    assert len(clients) == 40
    assert _mosquitto.verify_password(clients["d3-4"], "p34")
    assert len(_mosquitto.read_registry(p.registry)) == 40
    assert remove_devices(settings, ["d3-4", "nope"]) == 1
    assert "d3-4" not in _mosquitto.read_registry(p.registry)


def test_untraversable_parent_is_named(tmp_path: Path) -> None:
    from fleetwatch.stack._common import StackError, check_traversable

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(StackError, match=f"{locked} is not traversable by the postgres OS user"):
        check_traversable(locked / ".stack" / "pg", "postgres", "postgres")
    check_traversable(Path("/tmp/x/.stack/pg"), "postgres", "postgres")  # /tmp is world-traversable


def test_read_pid_ignores_a_live_process_that_is_not_ours(tmp_path: Path) -> None:
    """After a reboot the pid in a stale pid file may belong to anything: never claim (or signal) it."""
    import os

    from fleetwatch.stack._common import read_pid

    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but its command line is pytest's
    assert read_pid(pid_file, "/nowhere/mosquitto.conf") is None
    assert read_pid(pid_file, "pytest") == os.getpid()
    pid_file.write_text("garbage\n")
    assert read_pid(pid_file, "pytest") is None


def test_progress_step_names_the_service_and_log_of_a_client_error(tmp_path: Path) -> None:
    from fleetwatch.stack import StackError, _Progress

    def boom() -> None:
        raise TimeoutError("no answer")

    progress = _Progress(None, {"kafka": tmp_path / "kafka.log"})
    with pytest.raises(StackError) as info:
        progress.step("kafka: topics", boom)
    assert info.value.service == "kafka"
    assert info.value.log == tmp_path / "kafka.log"
    assert "kafka: topics: TimeoutError: no answer" in str(info.value)
