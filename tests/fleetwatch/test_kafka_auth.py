"""Which principal a client is and what each may do: pure, no broker (fleetwatch/kafka_auth.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from fleetwatch import topics
from fleetwatch.kafka_auth import KAFKA_ROLES, client_security, grants, kcat_args, username
from fleetwatch.settings import Settings


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    passwords = {f"kafka_{role}_password": SecretStr(f"pw-{role}") for role in KAFKA_ROLES}
    return Settings(**{"stack_dir": tmp_path, "kafka_as": None, **passwords, **overrides})  # type: ignore[arg-type]


def test_each_role_authenticates_as_its_own_scram_principal(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    kwargs = client_security(settings, "bridge")
    assert kwargs == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                      "sasl_plain_username": "svc-bridge", "sasl_plain_password": "pw-bridge"}
    assert len({username(settings, role) for role in KAFKA_ROLES}) == len(KAFKA_ROLES)


def test_kafka_as_makes_every_client_act_as_that_role(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_as="admin")
    assert client_security(settings, "worker")["sasl_plain_username"] == "svc-admin"
    assert client_security(settings, "worker")["sasl_plain_password"] == "pw-admin"


def test_kcat_config_is_private_and_uses_the_tools_listener(tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_bootstrap="127.0.0.1:9092", kafka_tools_port=None)
    argv = kcat_args(settings, "bridge", tmp_path)
    path = Path(argv[1])
    assert argv[0] == "-F" and path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "bootstrap.servers=127.0.0.1:9094\n" in text and "sasl.username=svc-bridge\n" in text
    assert "pw-bridge" not in " ".join(argv)


def test_grants_follow_least_privilege(tmp_path: Path) -> None:
    rules = grants(_settings(tmp_path))
    ops = {role: {(g.resource, g.name, g.operation) for g in rules[role]} for role in rules}
    # The bridge and the gateway write telemetry and its dead letters; they read only the registry.
    for ingest in ("bridge", "jt808"):
        assert ops[ingest] == {("topic", topics.TELEMETRY, "WRITE"), ("topic", topics.TELEMETRY_DLQ, "WRITE"),
                               ("topic", topics.REGISTRY, "READ")}
    # Nobody but the ingest roles (and the admin) may write telemetry: fixes cannot be forged.
    writers = {role for role, granted in ops.items() if ("topic", topics.TELEMETRY, "WRITE") in granted}
    assert writers == {"bridge", "jt808"}
    # Alerts are written by the worker only; the notifier reads them and writes nothing.
    alert_writers = {role for role, granted in ops.items() if ("topic", topics.ALERTS, "WRITE") in granted}
    assert alert_writers == {"worker"}
    assert {op for _, _, op in ops["notifier"]} == {"READ"}
    assert ("group", "fleetwatch-notify", "READ") in ops["notifier"]
    # The worker's own topics are a prefix of its app id, never a wildcard.
    prefixed = [g for g in rules["worker"] if g.prefixed]
    assert [(g.name, g.operation) for g in prefixed] == [("fleetwatch-worker-", "ALL")]
    assert rules["admin"] == []  # a super user
