"""Pure pieces of the stack: templates, mosquitto accounts and rights, device rows, Kafka/PG config."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from fleetwatch.settings import Settings
from fleetwatch.stack import _kafka, _mosquitto, _postgres
from fleetwatch.stack._common import render


def test_render_fills_placeholders() -> None:
    assert render("a={{a}} b={{b}}", {"a": 1, "b": "x"}) == "a=1 b=x"


def test_render_rejects_missing_and_unused_values() -> None:
    with pytest.raises(ValueError, match="without a value: b"):
        render("{{a}} {{b}}", {"a": 1})
    with pytest.raises(ValueError, match="not used by the template: c"):
        render("{{a}}", {"a": 1, "c": 2})


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
    settings = Settings(stack_dir=tmp_path, kafka_bootstrap="127.0.0.1:29092", kafka_controller_port=29093,
                        kafka_tools_port=None)
    passwords = {"broker": "b-secret", "admin": "a-secret", "bridge": "c-secret"}
    text = _kafka.render_properties(settings, tmp_path / "data", passwords)
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    # No unauthenticated listener: clients SCRAM, KRaft's own traffic PLAIN with static accounts.
    assert props["listeners"].startswith("CLIENT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093,")
    assert set(props["listener.security.protocol.map"].split(",")) == {
        "CLIENT:SASL_PLAINTEXT", "CONTROLLER:SASL_PLAINTEXT", "TOOLS:SASL_PLAINTEXT"}
    assert "PLAINTEXT://" not in props["listeners"]
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:svc-broker;User:svc-admin"
    # The controller listener knows only the node itself; the admin's password is not in the file.
    assert 'user_svc-broker="b-secret"' in props["listener.name.controller.plain.sasl.jaas.config"]
    assert "a-secret" not in props["listener.name.controller.plain.sasl.jaas.config"]
    # kcat's listener: the same principals over PLAIN, on the bootstrap port + 2 by default.
    assert props["listeners"].endswith(",TOOLS://127.0.0.1:29094")
    tools = props["listener.name.tools.plain.sasl.jaas.config"]
    assert 'user_svc-admin="a-secret"' in tools and 'user_svc-bridge="c-secret"' in tools
    assert "svc-broker" not in tools
    with pytest.raises(_kafka.StackError, match="kafka_admin_password"):
        _kafka.render_properties(settings, tmp_path / "data", {"broker": "b", "admin": 'x";', "bridge": "c"})
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
    server, app = _postgres.bootstrap_sql("fleet\"watch", "pa'ss", "db", "si'nk")
    assert "ALTER ROLE \"fleet\"\"watch\" WITH LOGIN CREATEROLE PASSWORD 'pa''ss';" in server
    assert "WHERE rolname = 'fleet\"watch'" in server
    assert "WHERE rolname = 'si''nk'" in server and "ALTER ROLE \"si'nk\" BYPASSRLS;" in server
    assert app == "CREATE EXTENSION IF NOT EXISTS timescaledb;\n"



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
