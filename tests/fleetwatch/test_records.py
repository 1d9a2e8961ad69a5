"""The record contract: round trips and precise rejections (code + field) for every record type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.records import (
    Alert,
    AlertStatus,
    AlertType,
    ContractError,
    DispatchOrder,
    Fix,
    OrderStatus,
    Severity,
    Trip,
    alert_id_for,
    parse_alert,
    parse_fix,
    parse_order,
    parse_trip,
    trip_id_for,
)

CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=CST)


def good_fix(**over: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": 1,
        "device_id": "NJ00001",
        "vehicle_id": "苏A10001",
        "ts": "2026-11-25T09:30:00+08:00",
        "lat": 32.0415,
        "lon": 118.7845,
        "speed_kmh": 42.5,
        "heading": 270.0,
        "acc": True,
        "seq": 17,
    }
    obj.update(over)
    return obj


def rejected(raw: Any, **kw: Any) -> ContractError:
    with pytest.raises(ContractError) as info:
        parse_fix(raw, now=NOW, **kw)
    return info.value


# --- round trips -----------------------------------------------------------------------------


def test_fix_round_trip_with_optional_fields() -> None:
    raw = good_fix(odometer_km=1234.5, alt_m=12.0, sats=9, alarm=256, fix_valid=False)
    fix = parse_fix(orjson.dumps(raw), now=NOW)
    assert fix.alarm == 256 and fix.fix_valid is False and fix.ts.utcoffset() == timedelta(hours=8)
    again = parse_fix(fix.to_json(), now=NOW)
    assert again == fix
    assert fix.key == "苏A10001".encode() and fix.dedup_key == ("NJ00001", 17)


def test_fix_without_optional_fields_omits_them() -> None:
    fix = parse_fix(good_fix(), now=NOW)
    assert "alarm" not in fix.to_dict() and "fix_valid" not in fix.to_dict()
    assert parse_fix(fix.to_json(), now=NOW) == fix


def test_z_suffix_is_utc() -> None:
    fix = parse_fix(good_fix(ts="2026-11-25T01:30:00Z"), now=NOW)
    assert fix.ts == datetime(2026, 11, 25, 1, 30, tzinfo=UTC)


def test_order_round_trip() -> None:
    order = DispatchOrder(
        order_id="PC-1",
        vehicle_id="苏A10001",
        org="js.nj.u01",
        start=datetime(2026, 11, 21, 9, tzinfo=CST),
        end=datetime(2026, 11, 21, 14, tzinfo=CST),
        purpose="应急",
        destination="镇江市",
        status=OrderStatus.APPROVED,
        destination_area={
            "type": "Polygon",
            "coordinates": [[[119, 32], [119.5, 32], [119.5, 32.3], [119, 32]]],
        },
    )
    assert parse_order(order.to_json()) == order
    assert order.covers(order.start, order.end) and not order.covers(
        order.start - timedelta(seconds=1), order.end
    )


def test_order_rejections() -> None:
    base = orjson.loads(
        DispatchOrder(
            "PC-1", "苏A1", "js", NOW, NOW + timedelta(hours=1), "", "", OrderStatus.APPROVED
        ).to_json()
    )
    for field_name, value, code in (
        ("end", base["start"], "bad_value"),
        ("status", "pending", "bad_value"),
        ("destination_area", [1, 2], "bad_type"),
        ("start", "2026-11-21T09:00:00", "naive_timestamp"),
        ("order_id", None, "missing_field"),
    ):
        with pytest.raises(ContractError) as info:
            parse_order({**base, field_name: value})
        assert (info.value.code, info.value.field) == (code, field_name)


def test_trip_round_trip_and_stable_id() -> None:
    start = datetime(2026, 11, 25, 9, tzinfo=CST)
    trip = Trip(
        trip_id_for("苏A1", start), "苏A1", "js.nj.u01", start, start + timedelta(minutes=20),
        32.0, 118.7, 32.1, 118.8, 9000.0, 61.5, 120, order_id="PC-1",
    )  # fmt: skip
    assert parse_trip(trip.to_json()) == trip
    assert trip.duration_s == 1200
    # the same instant in another offset is the same trip
    assert trip_id_for("苏A1", start.astimezone(UTC)) == trip.trip_id


def test_alert_round_trip_and_due() -> None:
    start = datetime(2026, 11, 25, 21, tzinfo=CST)
    alert = Alert.new(
        AlertType.OFF_HOURS, "苏A1", "js.nj.u01", start, start + timedelta(minutes=30), 32.0, 118.7,
        raised_at=start + timedelta(minutes=30), details={"minutes": 30}, trip_id="t1",
    )  # fmt: skip
    again = parse_alert(alert.to_json())
    assert again == alert
    assert again.due == alert.raised_at + timedelta(days=3)
    assert alert.alert_id == alert_id_for("off_hours", "苏A1", start.astimezone(UTC))
    assert again.status is AlertStatus.OPEN


def test_alert_severity_round_trips_and_is_optional() -> None:
    start = datetime(2026, 11, 25, 21, tzinfo=CST)
    red = Alert.new(
        AlertType.PRIVATE_DESTINATION, "苏A1", "js", start, None, 32.0, 118.7, start, severity=Severity.RED
    )
    assert orjson.loads(red.to_json())["severity"] == "red"
    assert parse_alert(red.to_json()) == red
    older = {k: v for k, v in orjson.loads(red.to_json()).items() if k != "severity"}
    assert parse_alert(older).severity is None  # alerts written before severity existed still parse


def test_alert_rejections() -> None:
    start = datetime(2026, 11, 25, 21, tzinfo=CST)
    base = orjson.loads(
        Alert.new(AlertType.OVERSPEED, "苏A1", "js", start, None, 32.0, 118.7, start).to_json()
    )
    for field_name, value, code in (
        ("type", "speeding", "bad_value"),
        ("status", "done", "bad_value"),
        ("details", "x", "bad_type"),
        ("lat", "32", "bad_type"),
        ("v", 2, "unknown_version"),
        ("severity", "orange", "bad_value"),
    ):
        with pytest.raises(ContractError) as info:
            parse_alert({**base, field_name: value})
        assert (info.value.code, info.value.field) == (code, field_name)


# --- precise rejections of fixes -------------------------------------------------------------

REQUIRED = ("v", "device_id", "vehicle_id", "ts", "lat", "lon", "speed_kmh", "heading", "acc", "seq")


@pytest.mark.parametrize("name", REQUIRED)
def test_missing_required_field(name: str) -> None:
    obj = good_fix()
    del obj[name]
    err = rejected(obj)
    assert err.field == name
    assert err.code == "missing_field"
    assert name in str(err)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lat", "32.04"),
        ("lon", "118"),
        ("speed_kmh", True),
        ("heading", [1]),
        ("acc", "true"),
        ("acc", 1),
        ("seq", 1.5),
        ("seq", "17"),
        ("device_id", 12345),
        ("ts", 1764000000),
        ("sats", 9.5),
        ("fix_valid", "yes"),
    ],
)
def test_wrong_type(name: str, value: Any) -> None:
    err = rejected(good_fix(**{name: value}))
    assert (err.code, err.field) == ("bad_type", name)
    assert err.value == value


@pytest.mark.parametrize(
    ("over", "code", "field"),
    [
        ({"lat": 95.0}, "out_of_range", "lat"),
        ({"lat": -91.0, "lon": 10.0}, "out_of_range", "lat"),
        ({"lon": 181.0, "lat": 10.0}, "out_of_range", "lon"),
        ({"lat": 118.7845, "lon": 32.0415}, "swapped_coordinates", "lat"),
        ({"lat": 0.0, "lon": 0.0}, "out_of_range", "lat"),
        ({"lat": float("nan")}, "bad_value", "lat"),
        ({"speed_kmh": -1.0}, "out_of_range", "speed_kmh"),
        ({"speed_kmh": 400.0}, "impossible_speed", "speed_kmh"),
        ({"heading": 360.0}, "out_of_range", "heading"),
        ({"seq": -1}, "out_of_range", "seq"),
        ({"ts": "2026-11-25T09:30:00"}, "naive_timestamp", "ts"),
        ({"ts": "yesterday"}, "bad_timestamp", "ts"),
        ({"ts": "2026-11-28T12:30:00+08:00"}, "future_timestamp", "ts"),
        ({"v": 2}, "unknown_version", "v"),
        ({"v": "1"}, "unknown_version", "v"),
        ({"device_id": "NJ/0001"}, "bad_value", "device_id"),
        ({"device_id": "  "}, "bad_value", "device_id"),
        ({"vehicle_id": "苏A" + "1" * 20}, "bad_value", "vehicle_id"),
        ({"alarm": 2**32}, "out_of_range", "alarm"),
        ({"alt_m": 10000.0}, "out_of_range", "alt_m"),
        ({"odometer_km": -3.0}, "out_of_range", "odometer_km"),
    ],
)
def test_bad_value(over: dict[str, Any], code: str, field: str) -> None:
    err = rejected(good_fix(**over))
    assert (err.code, err.field) == (code, field), str(err)
    assert err.reason and err.as_dict()["message"] == str(err)


def test_future_limit_is_relative_to_receiver_clock() -> None:
    ts = (NOW + timedelta(minutes=4)).isoformat()
    assert parse_fix(good_fix(ts=ts), now=NOW).ts == NOW + timedelta(minutes=4)
    assert rejected(good_fix(ts=ts), max_future=timedelta(minutes=1)).code == "future_timestamp"


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"a string"', "\u0000"])
def test_malformed_json(raw: bytes | str) -> None:
    err = rejected(raw)
    assert err.code == "malformed_json" and err.field is None


def test_swapped_message_names_both_readings() -> None:
    err = rejected(good_fix(lat=118.7845, lon=32.0415))
    assert "swapped" in err.reason and "lat=32.0415" in err.reason


# --- properties --------------------------------------------------------------------------------

offsets = st.sampled_from([timezone(timedelta(hours=h)) for h in (-5, 0, 8, 9)])
valid_fixes = st.builds(
    Fix,
    device_id=st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
    vehicle_id=st.text(alphabet="苏ABCDEFGHJKL0123456789", min_size=1, max_size=16).filter(str.strip),
    ts=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 11, 27), timezones=offsets),
    lat=st.floats(min_value=18.0, max_value=53.0),
    lon=st.floats(min_value=74.0, max_value=135.0),
    speed_kmh=st.floats(min_value=0, max_value=250),
    heading=st.floats(min_value=0, max_value=359.99),
    acc=st.booleans(),
    seq=st.integers(min_value=0, max_value=2**53),
    odometer_km=st.none() | st.floats(min_value=0, max_value=1e7),
    alt_m=st.none() | st.floats(min_value=-500, max_value=9000),
    sats=st.none() | st.integers(min_value=0, max_value=200),
    alarm=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
    fix_valid=st.none() | st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(valid_fixes)
def test_any_valid_fix_round_trips(fix: Fix) -> None:
    parsed = parse_fix(fix.to_json(), now=NOW)
    assert parsed == fix
    assert parse_fix(parsed.to_json(), now=NOW).to_json() == fix.to_json()


#: one corruption per field -> the code it must produce (the field is always the corrupted one)
CORRUPTIONS: dict[str, list[tuple[Any, str]]] = {
    "device_id": [(None, "missing_field"), (7, "bad_type"), ("a b", "bad_value")],
    "vehicle_id": [(None, "missing_field"), (["x"], "bad_type"), ("", "bad_value")],
    "ts": [(None, "missing_field"), ("2026-11-25 09:30", "naive_timestamp"), (3, "bad_type")],
    "lat": [(None, "missing_field"), ("x", "bad_type"), (91.0, "out_of_range")],
    "lon": [(None, "missing_field"), (False, "bad_type"), (-181.0, "out_of_range")],
    "speed_kmh": [(None, "missing_field"), (-0.5, "out_of_range"), (999.0, "impossible_speed")],
    "heading": [(None, "missing_field"), (-1.0, "out_of_range"), ("N", "bad_type")],
    "acc": [(None, "missing_field"), (0, "bad_type")],
    "seq": [(None, "missing_field"), (-5, "out_of_range"), (2.0, "bad_type")],
    "v": [(None, "missing_field"), (3, "unknown_version")],
    "sats": [(-1, "out_of_range"), ("9", "bad_type")],
    "alarm": [(-1, "out_of_range"), (1.5, "bad_type")],
}


@settings(max_examples=300, deadline=None)
@given(valid_fixes, st.sampled_from([(f, v, c) for f, opts in CORRUPTIONS.items() for v, c in opts]))
def test_any_single_corruption_is_rejected_with_the_right_field(
    fix: Fix, corruption: tuple[str, Any, str]
) -> None:
    name, value, code = corruption
    obj = fix.to_dict()
    if value is None:
        obj.pop(name, None)
    else:
        obj[name] = value
    if name in ("lat", "lon") and code == "out_of_range":
        # keep the other coordinate from making the pair look merely swapped
        obj["lon" if name == "lat" else "lat"] = 0.5
    err = rejected(orjson.dumps(obj))
    assert err.field == name, str(err)
    assert err.code == code, str(err)
