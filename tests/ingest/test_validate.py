"""Contract and identity checks of the bridge, without any broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from fleetwatch.records import DeviceRegistration, Fix
from ingest.registry import RegistryTable
from ingest.validate import (
    BAD_TOPIC,
    TOO_LARGE,
    TOPIC_DEVICE_MISMATCH,
    UNKNOWN_DEVICE,
    VEHICLE_MISMATCH,
    Rejection,
    check_fix,
    topic_device,
)

PREFIX = "fleetwatch/v1/telemetry"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LIMIT = 16 * 1024


def fix_payload(device: str = "dev-1", vehicle: str = "苏A12345", **extra: object) -> bytes:
    obj = {
        "v": 1,
        "device_id": device,
        "vehicle_id": vehicle,
        "ts": "2026-03-02T16:59:00+08:00",
        "lat": 32.06,
        "lon": 118.79,
        "speed_kmh": 42.5,
        "heading": 90,
        "acc": True,
        "seq": 7,
    }
    obj.update(extra)
    return orjson.dumps(obj)


def registration(device: str, vehicle: str, org: str = "js.nj") -> tuple[bytes, bytes]:
    """A record of the registry topic (key, value) as `fleetwatch devices add` writes it."""
    return device.encode(), DeviceRegistration(device, vehicle, org, NOW).to_json()


@pytest.fixture
def registry() -> RegistryTable:
    table = RegistryTable()
    for record in (registration("dev-1", "苏A12345"), registration("dev-2", "苏B00002")):
        table.apply(*record)
    return table


def check(payload: bytes, topic: str, registry: RegistryTable) -> Fix | Rejection:
    return check_fix(
        payload,
        topic,
        registry=registry,
        topic_prefix=PREFIX,
        now=NOW,
        max_future=timedelta(minutes=5),
        max_speed_kmh=250,
        max_payload_bytes=LIMIT,
    )


def test_valid_fix_from_its_own_device_passes(registry: RegistryTable) -> None:
    result = check(fix_payload(), f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Fix)
    assert (result.device_id, result.vehicle_id, result.seq) == ("dev-1", "苏A12345", 7)


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        (b"{not json", "malformed_json", None),
        (b"\xff\xfe", "malformed_json", None),
        (fix_payload(lat=None), "missing_field", "lat"),
        (fix_payload(speed_kmh=900), "impossible_speed", "speed_kmh"),
        (fix_payload(lat=118.79, lon=32.06), "swapped_coordinates", "lat"),
        (fix_payload(ts="2026-03-02T09:30:00+00:00"), "future_timestamp", "ts"),
        (fix_payload(ts="2026-03-02T09:00:00"), "naive_timestamp", "ts"),
        (fix_payload(v=2), "unknown_version", "v"),
    ],
)
def test_contract_violations_carry_code_field_and_message(
    registry: RegistryTable, payload: bytes, code: str, field: str | None
) -> None:
    result = check(payload, f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Rejection)
    assert (result.code, result.field) == (code, field)
    assert result.reason and result.message


def test_fix_naming_another_device_is_rejected(registry: RegistryTable) -> None:
    # dev-1's account publishing dev-2's ids (both registered): a spoof, not a valid fix.
    result = check(fix_payload(device="dev-2", vehicle="苏B00002"), f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Rejection)
    assert result.code == TOPIC_DEVICE_MISMATCH
    assert result.message == (
        "field 'device_id' says 'dev-2' but the message came from device 'dev-1' "
        "(topic fleetwatch/v1/telemetry/dev-1)"
    )


def test_payload_over_the_limit_is_too_large_before_parsing(registry: RegistryTable) -> None:
    # A valid fix carrying a big unknown field: it used to be accepted (and the field dropped).
    padded = fix_payload(firmware_blob="x" * LIMIT)
    result = check(padded, f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Rejection)
    assert result.code == TOO_LARGE
    assert f"payload of {len(padded)} bytes is over the {LIMIT}-byte limit" in result.message
    # Garbage is not even parsed: the size decides.
    assert check(b"{" * (LIMIT + 1), f"{PREFIX}/dev-1", registry).code == TOO_LARGE  # type: ignore[union-attr]


def test_small_unknown_fields_are_accepted_for_forward_compatibility(registry: RegistryTable) -> None:
    result = check(fix_payload(hdop=0.9, firmware="2.1.0"), f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Fix)
    assert b"hdop" not in result.to_json()  # Kafka carries the v1 contract only


@pytest.mark.parametrize(
    ("payload", "field", "says"),
    [
        (b'{"v": 1, "lat": NaN, "lon": 118.8}', "lat", "NaN is not a JSON number"),
        (b'{"v": 1, "speed_kmh":-Infinity}', "speed_kmh", "-Infinity is not a JSON number"),
        (b'{"v": 1, "heading": Infinity}', "heading", "Infinity is not a JSON number"),
    ],
)
def test_nan_and_infinity_are_named(registry: RegistryTable, payload: bytes, field: str, says: str) -> None:
    result = check(payload, f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Rejection)
    assert (result.code, result.field) == ("malformed_json", field)
    assert result.message.startswith(f"field {field!r}: {says} (JSON has no NaN or Infinity")


def test_binary_payload_says_it_is_not_utf8(registry: RegistryTable) -> None:
    blob = bytes(range(256)) * 16  # 4 KiB of binary
    result = check(blob, f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Rejection)
    assert result.code == "malformed_json"
    assert "not UTF-8 text: byte 0x80 at offset 128 of 4096" in result.message
    assert "surrogates" not in result.message
    assert "got '00 01 02 03" in result.message


def test_vehicle_not_matching_registry_is_rejected(registry: RegistryTable) -> None:
    result = check(fix_payload(vehicle="苏B00002"), f"{PREFIX}/dev-1", registry)
    assert isinstance(result, Rejection)
    assert (result.code, result.field) == (VEHICLE_MISMATCH, "vehicle_id")
    assert "苏A12345" in result.message


def test_unregistered_device_is_rejected(registry: RegistryTable) -> None:
    result = check(fix_payload(device="dev-9"), f"{PREFIX}/dev-9", registry)
    assert isinstance(result, Rejection)
    assert result.code == UNKNOWN_DEVICE


@pytest.mark.parametrize("topic", ["other/dev-1", f"{PREFIX}/dev-1/extra", f"{PREFIX}/", PREFIX])
def test_non_telemetry_topics_are_rejected(registry: RegistryTable, topic: str) -> None:
    result = check(fix_payload(), topic, registry)
    assert isinstance(result, Rejection)
    assert result.code == BAD_TOPIC


def test_topic_device_extracts_the_last_level() -> None:
    assert topic_device(f"{PREFIX}/abc.1", PREFIX) == "abc.1"
    assert topic_device(f"{PREFIX}/abc/def", PREFIX) is None


def test_registry_table_follows_updates_and_tombstones() -> None:
    table = RegistryTable()
    table.apply(*registration("dev-1", "苏A12345"))
    table.apply(*registration("dev-3", "苏C00003"))
    assert table.vehicle_of("dev-1") == "苏A12345"
    # A later registration of the same device (moved to another vehicle) wins ...
    table.apply(*registration("dev-1", "苏A99999"))
    assert table.vehicle_of("dev-1") == "苏A99999"
    # ... and a tombstone (no value) removes it.
    table.apply(b"dev-1", None)
    assert table.vehicle_of("dev-1") is None
    assert len(table) == 1


def test_registry_table_skips_a_bad_record_and_keeps_the_rest() -> None:
    table = RegistryTable()
    table.apply(b"dev-9", b'{"v": 1, "device_id": "dev-9"}')  # no vehicle_id
    table.apply(b"dev-8", b'{"v": 2, "device_id": "dev-8", "vehicle_id": "x", "org": "o"}')
    table.apply(*registration("dev-1", "苏A12345"))
    assert table.bad_records == 2
    assert table.vehicle_of("dev-9") is None
    assert table.vehicle_of("dev-1") == "苏A12345"


def test_unknown_device_reason_names_the_registry(registry: RegistryTable) -> None:
    result = check(fix_payload(device="dev-7"), f"{PREFIX}/dev-7", registry)
    assert isinstance(result, Rejection)
    assert result.code == UNKNOWN_DEVICE
    assert "'dev-7' is not registered in the device registry" in result.message
