"""Register and remove devices: database rows, then the compacted topic, then the MQTT accounts.

The order matters: a device's registration is on the topic (and so reaches the bridge's cache)
before its MQTT account exists, so its first fix is never dead-lettered as unknown. Each step is
idempotent: after a failure (say the broker was down) running the same input again completes it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from fleetwatch import topics
from fleetwatch.kafka_io import make_producer
from fleetwatch.records import DeviceRegistration
from fleetwatch.settings import Settings
from registry.entries import DeviceEntry, RegistryInputError, RowError, validate_entries
from registry.mosquitto import control, device_commands, removal_commands, reserved_names
from store.db import connect
from store.registry import (
    DeviceRow,
    OrgRow,
    RegisteredDevice,
    VehicleRow,
    delete_devices,
    known_orgs,
    registered_devices,
    upsert_registry,
)


@dataclass(frozen=True, slots=True)
class Registered:
    """What `register` did; ``credentials`` (device_id, password) is for flashing terminals: never log it."""

    orgs: int
    vehicles: int
    devices: int
    credentials: list[tuple[str, str]] = field(repr=False)  # kept out of reprs and logs
    generated: frozenset[str]  # device ids whose password was generated here


def device_password(settings: Settings, device_id: str) -> str:
    """The generated MQTT password of ``device_id``: HMAC-SHA256 of the id under the installation's
    device key, 32 URL-safe characters (192 bits). Same device, same key: same password."""
    key = settings.secret("device_secret_key").encode()
    digest = hmac.new(key, b"fleetwatch-mqtt-device:" + device_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def _database(settings: Settings) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return connect(settings)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"cannot reach the database at {settings.pg_host}:{settings.pg_port}: {exc}"
        ) from None


def register(
    settings: Settings,
    entries: Iterable[DeviceEntry],
    orgs: Iterable[OrgRow] = (),
    *,
    mqtt_accounts: bool = True,
) -> Registered:
    """Register devices (and ``orgs``, parents first): database, `fleetwatch.registry.v1`, MQTT accounts.

    ``mqtt_accounts=False`` is for JT/T 808 terminals: they authenticate to the gateway with the auth
    code it issues, not to Mosquitto. Raises RegistryInputError (nothing written) for bad entries or
    orgs missing from the org tree.
    """
    devices, org_rows = list(entries), list(orgs)
    errors = validate_entries(devices, reserved_names(settings))
    if errors:
        raise RegistryInputError(errors)
    with _database(settings) as conn:
        try:
            present = known_orgs(conn, {d.org for d in devices}) | {o.org_id for o in org_rows}
        except psycopg.errors.UndefinedTable:
            raise RuntimeError(
                "the database has no registry tables yet: run `fleetwatch db migrate`"
            ) from None
        missing = [
            RowError(
                d.row,
                "org",
                d.org,
                "is not in the org tree (import it first: `fleetwatch db import-registry rules.yaml`)",
            )
            for d in devices
            if d.org not in present
        ]
        if missing:
            raise RegistryInputError(missing)
        vehicles = {d.vehicle_id: VehicleRow(d.vehicle_id, d.org, d.depot) for d in devices}
        counts = upsert_registry(
            conn, org_rows, vehicles.values(), [DeviceRow(d.device_id, d.vehicle_id) for d in devices]
        )
    now = datetime.now(UTC)
    _publish(
        settings,
        [
            (d.device_id.encode(), DeviceRegistration(d.device_id, d.vehicle_id, d.org, now).to_json())
            for d in devices
        ],
    )
    if not mqtt_accounts:
        return Registered(counts[0], counts[1], counts[2], [], frozenset())
    credentials = [(d.device_id, d.password or device_password(settings, d.device_id)) for d in devices]
    control(settings, device_commands(settings, credentials))
    generated = frozenset(d.device_id for d in devices if d.password is None)
    return Registered(counts[0], counts[1], counts[2], credentials, generated)


def remove(settings: Settings, device_ids: Iterable[str], *, mqtt_accounts: bool = True) -> list[str]:
    """Unregister devices: database rows, a tombstone each on the topic, their MQTT accounts and roles.

    Returns the ids that were registered. Vehicles stay (their positions and alerts refer to them).
    """
    ids = sorted(set(device_ids))
    reserved = reserved_names(settings)
    bad = [RowError(0, "device_id", d, "service accounts cannot be removed") for d in ids if d in reserved]
    if bad:
        raise RegistryInputError(bad)
    with _database(settings) as conn:
        removed = delete_devices(conn, ids)
    _publish(settings, [(d.encode(), None) for d in ids])
    if mqtt_accounts:
        control(settings, removal_commands(settings, ids))
    return removed


def list_devices(settings: Settings, org: str | None = None) -> list[RegisteredDevice]:
    with _database(settings) as conn:
        return registered_devices(conn, org)


def _publish(settings: Settings, records: list[tuple[bytes, bytes | None]]) -> None:
    """Write registrations (None: a tombstone) and wait until Kafka has every one."""
    if not records:
        return
    producer = make_producer(settings, client_id="fleetwatch-registry")
    try:
        futures = [producer.send(topics.REGISTRY, key=key, value=value) for key, value in records]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close(timeout=10)
