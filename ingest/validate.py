"""Decide whether one MQTT message is a valid fix from the device it claims to be from."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from fleetwatch.records import ContractError, Fix, Rejection, parse_fix

#: Identity rejection codes (counted and written to the dead-letter topic like contract codes).
BAD_TOPIC = "bad_topic"
TOPIC_DEVICE_MISMATCH = "topic_device_mismatch"
UNKNOWN_DEVICE = "unknown_device"
VEHICLE_MISMATCH = "vehicle_mismatch"
TOO_LARGE = "too_large"


class VehicleLookup(Protocol):
    """Which vehicle a device is registered to (`ingest.registry.RegistryCache` in production).

    The broker's ACL already ties each telemetry topic to one device account; the registry
    adds the second half of the identity: which vehicle that terminal is installed in.
    """

    source: str

    def vehicle_of(self, device_id: str) -> str | None: ...


def topic_device(topic: str, prefix: str) -> str | None:
    """The device id a telemetry topic names (its single level after ``prefix``), else None."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    rest = topic[len(head) :]
    if not rest or "/" in rest:
        return None
    return rest


def check_fix(
    payload: bytes,
    topic: str,
    *,
    registry: VehicleLookup,
    topic_prefix: str,
    now: datetime,
    max_future: timedelta,
    max_speed_kmh: float,
    max_payload_bytes: int,
) -> Fix | Rejection:
    """Parse ``payload`` against the v1 contract and check that its identity matches its sender."""
    sender = topic_device(topic, topic_prefix)
    if sender is None:
        return Rejection(
            BAD_TOPIC, None, "not a telemetry topic", f"topic {topic!r} is not {topic_prefix}/<device_id>"
        )
    if len(payload) > max_payload_bytes:
        # Checked before parsing: a fix is ~250 bytes, and megabytes of JSON cost real time.
        return Rejection(
            TOO_LARGE,
            None,
            f"payload over the bridge's {max_payload_bytes}-byte limit",
            f"payload of {len(payload)} bytes is over the {max_payload_bytes}-byte limit "
            "(FLEETWATCH_INGEST_MAX_PAYLOAD_BYTES; a fix is a few hundred bytes)",
        )
    try:
        fix = parse_fix(payload, now=now, max_future=max_future, max_speed_kmh=max_speed_kmh)
    except ContractError as exc:
        return Rejection.from_contract(exc)
    if fix.device_id != sender:
        return Rejection(
            TOPIC_DEVICE_MISMATCH,
            "device_id",
            "device_id differs from the account that published it",
            f"field 'device_id' says {fix.device_id!r} but the message came from device {sender!r} "
            f"(topic {topic})",
        )
    registered = registry.vehicle_of(sender)
    if registered is None:
        return Rejection(
            UNKNOWN_DEVICE,
            "device_id",
            "device is not in the vehicle registry",
            f"field 'device_id': {sender!r} is not registered in {registry.source}",
        )
    if fix.vehicle_id != registered:
        return Rejection(
            VEHICLE_MISMATCH,
            "vehicle_id",
            "vehicle_id differs from the registry",
            f"field 'vehicle_id' says {fix.vehicle_id!r} but device {sender!r} is registered to "
            f"vehicle {registered!r}",
        )
    return fix
