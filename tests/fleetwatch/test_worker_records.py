"""The worker's output envelopes round-trip and reject what they should (the sink parses them)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetwatch.records import (
    Alert,
    AlertType,
    Change,
    ChangeOp,
    ContractError,
    OpsEvent,
    VehicleStatus,
    VehicleStatusKind,
    parse_change,
    parse_ops_event,
    parse_vehicle_status,
)

T = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)
ALERT = Alert.new(
    AlertType.OFF_HOURS, "苏A10001", "js.nj.u01", T, T, 32.0, 118.7, T, {"outside_seconds": 600}
)


def test_change_round_trips_upsert_and_retraction() -> None:
    upsert = Change("alert", ChangeOp.UPSERT, ALERT.alert_id, "苏A10001", 3, T, ALERT)
    assert parse_change(upsert.to_json()) == upsert
    retract = Change("alert", ChangeOp.RETRACT, ALERT.alert_id, "苏A10001", 4, T, ALERT, "exempted", "o-1")
    assert parse_change(retract.to_json()) == retract
    bare = Change("trip", ChangeOp.RETRACT, "t1", "苏A10001", 5, T, None, "late_fix")
    assert parse_change(bare.to_json()) == bare


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("op", "delete", "bad_value"),
        ("kind", "order", "bad_value"),
        ("revision", "7", "bad_type"),
        ("v", 2, "unknown_version"),
    ],
)
def test_change_rejects_with_the_field_named(field: str, value: object, code: str) -> None:
    obj = Change("alert", ChangeOp.UPSERT, ALERT.alert_id, "苏A10001", 3, T, ALERT).to_dict()
    obj[field] = value
    with pytest.raises(ContractError) as err:
        parse_change(obj)
    assert (err.value.code, err.value.field) == (code, field)


def test_an_upsert_needs_its_record() -> None:
    obj = Change("alert", ChangeOp.UPSERT, ALERT.alert_id, "苏A10001", 3, T, ALERT).to_dict()
    del obj["record"]
    with pytest.raises(ContractError) as err:
        parse_change(obj)
    assert err.value.field == "record"


def test_vehicle_status_and_ops_event_round_trip() -> None:
    row = VehicleStatus(
        "苏A10001", "js.nj.u01", T, 32.0, 118.7, 0.0, False, VehicleStatusKind.PARKED, ("a1",), T
    )
    assert parse_vehicle_status(row.to_json()) == row
    event = OpsEvent("config_rejected", T, "w1", None, {"error": "rules.yaml: bogus_key: unknown key"})
    assert parse_ops_event(event.to_json()) == event
