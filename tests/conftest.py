"""Shared fixtures: the real local stack (started by the project's own code) and unique names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from fleetwatch.settings import Settings

# Tests drive the services over scratch topics and consumer groups (fwtest.<tag>.telemetry, ...)
# that the services' own ACLs rightly do not cover: their Kafka clients act as the admin principal
# (still SASL/SCRAM). tests/security/ runs each service principal against its real ACLs.
os.environ.setdefault("FLEETWATCH_KAFKA_AS", "admin")


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """The running local stack; `fleetwatch stack up` is idempotent, so this is cheap when warm."""
    from fleetwatch.stack import ensure_up

    settings = Settings()
    ensure_up(settings)
    yield settings


@pytest.fixture
def unique() -> str:
    """A random suffix for per-test topic, group and table names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def database(stack: Settings) -> Settings:
    """The stack's database, migrated, with the sink and dashboards logins provisioned."""
    from store.db import connect
    from store.migrate import migrate
    from store.roles import ensure_service_logins

    with connect(stack) as conn:
        migrate(conn)
        ensure_service_logins(conn, stack)
    return stack
