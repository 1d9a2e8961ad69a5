"""Sink decoding, envelopes, dead letters and error classification (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord

from fleetwatch.records import (
    DEAD_LETTER_KEEP_BYTES,
    Alert,
    AlertType,
    ContractError,
    DeadLetterStage,
    Rejection,
    parse_change,
    parse_dead_letter,
    parse_fix,
)
from sink.alerts import AlertsSink
from sink.positions import COLUMNS as POSITION_COLUMNS
from sink.positions import PositionsSink, typed_fix
from sink.registry import SINKS, make_sinks
from sink.runner import Refused, is_record_error
from sink.vehicle_state import VehicleStateSink
from store.registry import OrgRow, _parents_first


def record(value: bytes | None, topic: str = "t", offset: int = 7) -> ConsumerRecord:
    return ConsumerRecord(topic, 2, -1, offset, 1_764_000_000_000, 0, b"k", value, [], None, 0, 0, 0)


def test_every_table_has_one_sink_reading_its_own_topic() -> None:
    sinks = make_sinks()
    assert [s.table for s in sinks] == list(SINKS)
    assert len({s.topic for s in sinks}) == len(sinks)
    assert make_sinks(["positions"], {"positions": "other"})[0].topic == "other"
    with pytest.raises(ValueError, match="unknown table"):
        make_sinks(["nope"])


FIX = {"v": 1, "device_id": "d-1", "vehicle_id": "苏A12345", "ts": "2026-11-21T10:00:00+08:00", "lat": 32.0,
       "lon": 118.7, "speed_kmh": 40, "heading": 90.5, "acc": True, "seq": 7}  # fmt: skip
KAFKA_TIME = datetime(2025, 11, 24, 16, 0, tzinfo=UTC)  # record()'s timestamp


def test_positions_are_typed_in_the_sink_in_copy_order() -> None:
    row = PositionsSink().decode(record(orjson.dumps(FIX | {"sats": 9, "alarm": 2**31, "fix_valid": False})))
    assert dict(zip((name for name, _ in POSITION_COLUMNS), row, strict=False)) == {
        "ts": datetime(2026, 11, 21, 2, tzinfo=UTC), "vehicle_id": "苏A12345", "device_id": "d-1", "seq": 7,
        "lat": 32.0, "lon": 118.7, "speed_kmh": 40, "heading": 90.5, "ignition": True, "fix_valid": False,
        "alarm": 2**31, "odometer_km": None, "alt_m": None, "sats": 9, "received_at": KAFKA_TIME}  # fmt: skip
    assert len(row) == len(POSITION_COLUMNS) - 1  # the org is added when the batch is written


@pytest.mark.parametrize(
    ("raw", "field", "code"),
    [
        (b"{not json", None, "malformed_json"),
        (b"\xff\xfe", None, "malformed_json"),  # "not UTF-8 text: byte 0xff at offset 0"
        (b"[1, 2]", None, "malformed_json"),
        (orjson.dumps(FIX | {"v": 2}), "v", "unknown_version"),
        (orjson.dumps(FIX | {"v": True}), "v", "unknown_version"),
        (orjson.dumps({k: v for k, v in FIX.items() if k != "lat"}), "lat", "missing_field"),
        (orjson.dumps(FIX | {"acc": "yes"}), "acc", "bad_type"),  # a bool column would take it as true
        (orjson.dumps(FIX | {"seq": True}), "seq", "bad_type"),
        (orjson.dumps(FIX | {"seq": 2.5}), "seq", "bad_type"),
        (orjson.dumps(FIX | {"seq": 2**63 + 5}), "seq", "out_of_range"),  # the contract's int, not bigint
        (orjson.dumps(FIX | {"vehicle_id": 12345}), "vehicle_id", "bad_type"),
        (orjson.dumps(FIX | {"ts": "2026-11-21T10:00:00"}), "ts", "naive_timestamp"),
        (orjson.dumps(FIX | {"speed_kmh": 1e39}), "speed_kmh", "impossible_speed"),  # real would store inf
        (orjson.dumps(FIX | {"sats": "9"}), "sats", "bad_type"),
    ],
)
def test_a_fix_the_sink_cannot_type_is_explained_by_the_contract(
    raw: bytes, field: str | None, code: str
) -> None:
    with pytest.raises(ContractError) as err:
        PositionsSink().decode(record(raw))
    assert (err.value.field, err.value.code) == (field, code)


def test_ranges_are_left_to_the_bridge_and_the_table_but_check_explains_them() -> None:
    far = record(orjson.dumps(FIX | {"lat": 95.0}))
    assert PositionsSink().decode(far)[4] == 95.0  # the table's CHECK refuses it; the runner asks check()
    with pytest.raises(ContractError) as err:
        PositionsSink().check(far)
    assert (err.value.field, err.value.code) == ("lat", "out_of_range")


_FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
    st.text(max_size=5), st.sampled_from(["2026-11-21T10:00:00Z", " 2026-11-21T10:00:00+08:00 "]),
    st.just([1]),
)  # fmt: skip
_FIELDS = [*FIX, "odometer_km", "alt_m", "sats", "alarm", "fix_valid"]


@settings(max_examples=400, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(_FIELDS), _FIELD_VALUES, max_size=3),
    dropped=st.sets(st.sampled_from(list(FIX)), max_size=1),
)
def test_the_sink_types_every_fix_the_contract_accepts_as_the_contract_reads_it(
    changes: dict[str, Any], dropped: set[str]
) -> None:
    """Every fix the contract (the bridge) accepts is typed, with the contract's values: the fast
    path never dead-letters a valid fix. What it lets through that the contract refuses (ranges,
    id formats) the bridge never writes; the table's CHECKs refuse the ranges all the same, and
    `check` explains them (above)."""
    doc = {k: v for k, v in (FIX | changes).items() if k not in dropped}
    raw = orjson.dumps(doc)
    try:
        fix = parse_fix(raw, max_future=timedelta(days=36500))
    except ContractError:
        return  # refused either way: by decoding, or (ranges) by the table, explained by check()
    assert typed_fix(raw, KAFKA_TIME) == (
        fix.ts, fix.vehicle_id, fix.device_id, fix.seq, fix.lat, fix.lon, fix.speed_kmh, fix.heading, fix.acc,
        fix.fix_valid, fix.alarm, fix.odometer_km, fix.alt_m, fix.sats, KAFKA_TIME), doc  # fmt: skip


CHANGE = {"v": 1, "kind": "alert", "op": "retract", "id": "a1", "vehicle_id": "V", "revision": 3,
          "emitted_at": "2026-11-21T10:00:00+08:00", "reason": "exempted", "order_id": "O-1"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"v": 2}, "v", "unknown_version"),
        ({"kind": "trip"}, "kind", "bad_value"),
        ({"revision": -1}, "revision", "bad_value"),
        ({"revision": True}, "revision", "bad_type"),
        ({"revision": 2**63}, "revision", "bad_value"),
        ({"op": "delete"}, "op", "bad_value"),
        ({"op": "upsert"}, "record", "missing_field"),
        ({"reason": 5}, "reason", "bad_type"),
        ({"emitted_at": "yesterday"}, "emitted_at", "bad_timestamp"),
    ],
)
def test_change_envelope_errors_name_the_field(change: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(ContractError) as err:
        parse_change(orjson.dumps(CHANGE | change), "alert")
    assert (err.value.field, err.value.code) == (field, code)


def test_a_bare_retraction_carries_id_revision_reason_and_order() -> None:
    change = parse_change(orjson.dumps(CHANGE), "alert")
    assert (change.id, change.revision, change.retracted, change.record, change.reason, change.order_id) == (
        "a1", 3, True, None, "exempted", "O-1")  # fmt: skip


def test_alert_severity_and_vehicle_state_fields_are_checked() -> None:
    start = datetime(2026, 11, 21, 2, tzinfo=UTC)
    alert = Alert.new(AlertType.OFF_HOURS, "V", "js", start, None, 32.0, 118.0, start)
    upsert = CHANGE | {"op": "upsert", "id": alert.alert_id, "record": alert.to_dict()}
    row = AlertsSink().decode(record(orjson.dumps(upsert)))
    assert row[:3] == (alert.alert_id, "off_hours", "yellow")  # no severity: yellow, as before v1 had one
    with pytest.raises(ContractError, match="severity"):
        green = alert.to_dict() | {"severity": "green"}
        AlertsSink().decode(record(orjson.dumps(upsert | {"record": green})))
    with pytest.raises(ContractError) as other:
        AlertsSink().decode(record(orjson.dumps(upsert | {"id": "a2"})))
    assert other.value.field == "id"
    state = {"v": 1, "vehicle_id": "V", "org": "js", "ts": "2026-11-21T10:00:00+08:00", "lat": 32.0,
             "lon": 118.0, "speed_kmh": 0, "acc": "yes", "status": "parked",
             "updated_at": "2026-11-21T10:00:05+08:00"}  # fmt: skip
    with pytest.raises(ContractError) as err:
        VehicleStateSink().decode(record(orjson.dumps(state)))
    assert err.value.field == "acc"
    row = VehicleStateSink().decode(record(orjson.dumps(state | {"acc": False}), offset=41))
    assert row[-1] == 41 and row[6] is False and row[8] == []


def test_a_dead_letter_keeps_the_bytes_the_source_and_the_table() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    small = Refused(record(b"{bad"), "positions", Rejection("malformed_json", None, "not JSON", "msg"))
    letter = parse_dead_letter(small.letter("g1", now).to_json())
    assert letter.payload == b"{bad" and letter.truncated is False and letter.original_size == 4
    assert (letter.source_partition, letter.source_offset, letter.extra) == (2, 7, {"table": "positions"})
    assert (letter.stage, letter.instance, letter.received_at) == (DeadLetterStage.SINK, "g1", now)
    big = record(b"x" * (DEAD_LETTER_KEEP_BYTES + 10))
    huge = Refused(big, "positions", Rejection("db_rejected", None, "r", "m"), "54000")
    letter = parse_dead_letter(huge.letter("g1", now).to_json())
    assert letter.truncated is True and letter.original_size == DEAD_LETTER_KEEP_BYTES + 10
    assert len(letter.payload) == DEAD_LETTER_KEEP_BYTES and letter.extra["sqlstate"] == "54000"
    assert Refused(record(None), "positions", small.rejection).letter("g1", now).payload == b""


def test_only_errors_about_a_record_are_dead_lettered() -> None:
    assert is_record_error(psycopg.errors.InvalidTextRepresentation("bad"))  # 22P02
    assert is_record_error(psycopg.errors.NotNullViolation("null"))  # 23502
    assert is_record_error(OverflowError("int too big to convert"))
    assert is_record_error(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert not is_record_error(psycopg.errors.InsufficientPrivilege("no grant"))  # 42501: wait, don't DLQ
    assert not is_record_error(psycopg.errors.UndefinedTable("no table"))
    assert not is_record_error(psycopg.OperationalError("server closed the connection"))


def test_the_org_tree_is_written_parents_first_and_a_cycle_is_refused() -> None:
    orgs = [OrgRow("js.nj.u1", "u", "js.nj"), OrgRow("js", "p", None), OrgRow("js.nj", "c", "js")]
    assert [o.org_id for o in _parents_first(orgs)] == ["js", "js.nj", "js.nj.u1"]
    with pytest.raises(ValueError, match="cycle"):
        _parents_first([OrgRow("a", "a", "b"), OrgRow("b", "b", "a")])
