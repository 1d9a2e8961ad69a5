"""Pure pieces of the stack: template rendering, mosquitto password file, device rows, Kafka/PG config."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from fleetwatch.settings import Settings
from fleetwatch.stack import _kafka, _mosquitto, _postgres
from fleetwatch.stack._common import render
from fleetwatch.stack._mosquitto import DeviceRowError

# Written by the real `mosquitto_passwd -b` (2.0.11) for user dev-0001, password s3cret.
MOSQUITTO_PASSWD_LINE = (
    "dev-0001:$7$101$Aw1C6CshdcDKEgJE$Gahx2jhqHS8sg9a/DrHy/qlwiYHS62zIfAARCDRBXBJ6P4kmW++FRjjFv9CRbnEhJHft+"
    "6bJikimjL+21IY3iA=="
)


def test_render_fills_placeholders() -> None:
    assert render("a={{a}} b={{b}}", {"a": 1, "b": "x"}) == "a=1 b=x"


def test_render_rejects_missing_and_unused_values() -> None:
    with pytest.raises(ValueError, match="without a value: b"):
        render("{{a}} {{b}}", {"a": 1})
    with pytest.raises(ValueError, match="not used by the template: c"):
        render("{{a}}", {"a": 1, "c": 2})


def test_hash_password_matches_mosquitto_passwd() -> None:
    salt = base64.b64decode(MOSQUITTO_PASSWD_LINE.split("$")[3])
    assert _mosquitto.hash_password("dev-0001", "s3cret", salt=salt) == MOSQUITTO_PASSWD_LINE


def test_verify_password_accepts_right_and_rejects_wrong() -> None:
    assert _mosquitto.verify_password(MOSQUITTO_PASSWD_LINE, "s3cret")
    assert not _mosquitto.verify_password(MOSQUITTO_PASSWD_LINE, "s3cret2")
    assert not _mosquitto.verify_password("dev:$6$abc$def", "s3cret")


def test_fresh_hashes_use_random_salt() -> None:
    a = _mosquitto.hash_password("d", "pw")
    b = _mosquitto.hash_password("d", "pw")
    assert a != b
    assert re.fullmatch(r"d:\$7\$101\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}", a)
    assert _mosquitto.verify_password(a, "pw")


def test_passwd_round_trip_keeps_order_and_ignores_comments() -> None:
    text = "# c\nb:$7$1$x$y\n\na:$7$1$x$z\n"
    entries = _mosquitto.parse_passwd(text)
    assert list(entries) == ["b", "a"]
    assert _mosquitto.format_passwd(entries) == "b:$7$1$x$y\na:$7$1$x$z\n"


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


def test_mosquitto_conf_and_acl(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, mqtt_port=18830, mqtt_max_queued_messages=2_500_000)
    p = _mosquitto.paths(settings)
    conf = _mosquitto.render_conf(settings, p, as_root=True)
    assert "listener 18830 127.0.0.1" in conf
    assert "persistence true" in conf
    assert f"persistence_location {p.data}/" in conf
    assert "max_queued_messages 2500000" in conf
    assert "max_queued_messages 1000000" in _mosquitto.render_conf(Settings(stack_dir=tmp_path), p, True)
    assert "allow_anonymous false" in conf
    assert "user mosquitto" in conf
    assert "user mosquitto" not in _mosquitto.render_conf(settings, p, as_root=False)
    acl = _mosquitto.render_acl(settings)
    assert "pattern write fleetwatch/v1/telemetry/%u" in acl
    assert "user svc-bridge\ntopic read fleetwatch/v1/telemetry/#" in acl
    assert "user svc-notifier\ntopic write fleetwatch/v1/notify/#" in acl
    assert "user svc-admin\ntopic readwrite fleetwatch/#" in acl


def test_kafka_properties(tmp_path: Path) -> None:
    settings = Settings(stack_dir=tmp_path, kafka_bootstrap="127.0.0.1:29092", kafka_controller_port=29093)
    text = _kafka.render_properties(settings, tmp_path / "data")
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"


def test_kafka_bootstrap_must_be_host_port() -> None:
    with pytest.raises(_kafka.StackError, match="host:port"):
        _kafka.bootstrap_host_port(Settings(kafka_bootstrap="localhost"))


def test_kafka_cluster_id_is_kafka_uuid_text() -> None:
    cid = _kafka.new_cluster_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid)
    assert len(base64.urlsafe_b64decode(cid + "==")) == 16


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
    entries = _mosquitto.parse_passwd(p.passwd.read_text())
    assert len(entries) == 40
    assert _mosquitto.verify_password(entries["d3-4"], "p34")
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
