"""Sink decoding, envelopes, dead letters and error classification (no services)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest
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
)
from sink.alerts import AlertsSink
from sink.positions import PositionsSink
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


def test_positions_leave_parsing_to_the_database_but_explain_with_the_contract() -> None:
    raw = b'{"v": 1, "device_id": "d1"}'
    text, received_at = PositionsSink().decode(record(raw))
    assert text == raw.decode() and received_at == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)
    with pytest.raises(ContractError) as err:
        PositionsSink().check(record(raw))
    assert err.value.code == "missing_field" and err.value.field == "vehicle_id"
    with pytest.raises(ContractError, match="not UTF-8"):
        PositionsSink().decode(record(b"\xff\xfe"))


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
    assert not is_record_error(psycopg.errors.InsufficientPrivilege("no grant"))  # 42501: wait, don't DLQ
    assert not is_record_error(psycopg.errors.UndefinedTable("no table"))
    assert not is_record_error(psycopg.OperationalError("server closed the connection"))


def test_the_org_tree_is_written_parents_first_and_a_cycle_is_refused() -> None:
    orgs = [OrgRow("js.nj.u1", "u", "js.nj"), OrgRow("js", "p", None), OrgRow("js.nj", "c", "js")]
    assert [o.org_id for o in _parents_first(orgs)] == ["js", "js.nj", "js.nj.u1"]
    with pytest.raises(ValueError, match="cycle"):
        _parents_first([OrgRow("a", "a", "b"), OrgRow("b", "b", "a")])
