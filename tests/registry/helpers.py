"""Registering test devices through the product path (`registry.register`), in a `test` org."""

from __future__ import annotations

from collections.abc import Iterable

from fleetwatch.settings import Settings
from registry import DeviceEntry, Registered, register
from store.db import connect
from store.migrate import migrate
from store.registry import OrgRow

TEST_ORG = OrgRow("test", "test devices", None)


def ensure_migrated(settings: Settings) -> None:
    """The registry tables exist (`fleetwatch db migrate` is idempotent and cheap when current)."""
    with connect(settings) as conn:
        migrate(conn)


def register_test_devices(settings: Settings, rows: Iterable[tuple[str, str, str | None]]) -> Registered:
    """(device_id, vehicle_id, password or None = generated): database, registry topic, MQTT accounts."""
    ensure_migrated(settings)
    entries = [DeviceEntry(d, v, TEST_ORG.org_id, None, p) for d, v, p in rows]
    return register(settings, entries, [TEST_ORG])
