"""Kafka identities: each service's SCRAM principal, its ACLs, and client security kwargs from settings.

One place turns settings into what kafka-python, aiokafka and faust need to authenticate, so every
client in the code base (product, tests, benches, the stack) gets credentials the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fleetwatch import topics
from fleetwatch.settings import KAFKA_ROLES, KafkaRole, Settings

if TYPE_CHECKING:
    from faust.auth import SASLCredentials

__all__ = [
    "KAFKA_ROLES",
    "SASL_MECHANISM",
    "SECURITY_PROTOCOL",
    "Grant",
    "KafkaRole",
    "client_security",
    "faust_credentials",
    "grants",
    "kcat_args",
    "password_secret",
    "username",
]

SASL_MECHANISM = "SCRAM-SHA-512"
#: Loopback / private network only: SCRAM never sends the password, but records travel in clear.
SECURITY_PROTOCOL = "SASL_PLAINTEXT"


class _ScramOverPlaintext(logging.Filter):
    """kafka-python warns "Exchanging credentials in the clear" on every SCRAM connection without
    TLS; SCRAM sends a proof, never the password, so the warning only floods service logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "credentials in the clear" not in record.getMessage()


logging.getLogger("kafka.net.sasl.scram").addFilter(_ScramOverPlaintext())


def username(settings: Settings, role: str) -> str:
    return f"{settings.kafka_user_prefix}{role}"


def password_secret(role: str) -> str:
    """The secret (and ``FLEETWATCH_`` variable, upper-cased) holding ``role``'s password."""
    return f"kafka_{role}_password"


def _principal(settings: Settings, role: KafkaRole) -> tuple[str, str]:
    acting = settings.kafka_as or role
    return username(settings, acting), settings.secret(password_secret(acting))


def client_security(settings: Settings, role: KafkaRole) -> dict[str, Any]:
    """kafka-python and aiokafka client kwargs (both libraries use the same names) for ``role``."""
    user, password = _principal(settings, role)
    return {
        "security_protocol": SECURITY_PROTOCOL,
        "sasl_mechanism": SASL_MECHANISM,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


def kcat_args(settings: Settings, role: KafkaRole, directory: Path | None = None) -> list[str]:
    """``kcat`` arguments for ``role``: its config file, written 0600 into ``directory`` (default: the
    stack's secrets directory; a password on the command line would show in ``ps``). kcat uses the
    TOOLS listener (SASL/PLAIN): librdkafka < 2.6.1 cannot complete SCRAM with Kafka 4."""
    user, password = _principal(settings, role)
    path = (directory or settings.stack_dir.resolve() / "secrets") / f"kcat-{role}.conf"
    lines = [f"bootstrap.servers={settings.kafka_tools_bootstrap}", f"security.protocol={SECURITY_PROTOCOL}",
             "sasl.mechanisms=PLAIN", f"sasl.username={user}", f"sasl.password={password}"]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return ["-F", str(path)]


def faust_credentials(settings: Settings, role: KafkaRole) -> SASLCredentials:
    """faust's ``broker_credentials`` for ``role`` (faust hands them to its aiokafka clients)."""
    from faust.auth import SASLCredentials

    user, password = _principal(settings, role)
    return SASLCredentials(username=user, password=password, mechanism=SASL_MECHANISM)


# ------------------------------------------------------------------------------------------
# ACLs: what each principal may do (the stack applies these; everything else is denied)
# ------------------------------------------------------------------------------------------

Operation = Literal["READ", "WRITE", "DESCRIBE", "CREATE", "DELETE", "ALTER", "DESCRIBE_CONFIGS",
                    "ALTER_CONFIGS", "ALL"]


@dataclass(frozen=True, slots=True)
class Grant:
    """ALLOW ``operation`` on a topic or consumer group named ``name`` (or starting with it)."""

    resource: Literal["topic", "group"]
    name: str
    operation: Operation
    prefixed: bool = False


def _topics(operation: Operation, *names: str) -> list[Grant]:
    return [Grant("topic", name, operation) for name in names]


def grants(settings: Settings) -> dict[KafkaRole, list[Grant]]:
    """Role -> its grants. ``admin`` (and the broker itself) are super users and need none.

    WRITE and READ each imply DESCRIBE (metadata, offsets). An idempotent producer needs only
    WRITE on a topic since Kafka 3.0 (KIP-679), not the cluster's IDEMPOTENT_WRITE.
    """
    # Gateways follow the device registry (assigned partitions, no group) and write fixes.
    ingest = [*_topics("READ", topics.REGISTRY), *_topics("WRITE", topics.TELEMETRY, topics.TELEMETRY_DLQ)]
    worker_app = settings.worker_app_id
    return {
        "bridge": ingest,
        "jt808": ingest,
        "worker": [
            *_topics("READ", topics.TELEMETRY, topics.ORDERS),
            *_topics("WRITE", topics.TRIPS, topics.ALERTS, topics.VEHICLE_STATE, topics.OPS,
                     topics.WORKER_DLQ),
            Grant("group", worker_app, "READ"),
            # faust's own topics (state changelog, assignor): <app id>-...; it creates them itself.
            Grant("topic", f"{worker_app}-", "ALL", prefixed=True),
        ],
        "sink": [
            *_topics("READ", topics.TELEMETRY, topics.ORDERS, topics.TRIPS, topics.ALERTS,
                     topics.VEHICLE_STATE),
            *_topics("WRITE", topics.SINK_DLQ),
            Grant("group", settings.sink_group, "READ"),
        ],
        "notifier": [
            *_topics("READ", topics.ALERTS),
            Grant("group", settings.notify_group, "READ"),
        ],
        "admin": [],
    }
