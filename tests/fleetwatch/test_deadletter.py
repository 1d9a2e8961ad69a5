"""The one dead-letter record: original bytes, reason, source and stage; it round-trips and reads v1."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from fleetwatch.records import (
    DEAD_LETTER_KEEP_BYTES,
    ContractError,
    DeadLetter,
    DeadLetterStage,
    Rejection,
    parse_dead_letter,
    parse_fix,
)

RECEIVED = datetime(2026, 3, 2, 1, 2, 3, tzinfo=UTC)


def bridge_letter(payload: bytes, rejection: Rejection, **kw: int) -> DeadLetter:
    return DeadLetter.of(
        rejection, payload=payload, source_topic="fleetwatch/v1/telemetry/d1", received_at=RECEIVED,
        stage=DeadLetterStage.BRIDGE, instance="a", **kw,
    )  # fmt: skip


def test_round_trip_keeps_non_utf8_payload_and_reason() -> None:
    raw = b"\x00\xffnot json at all"
    with pytest.raises(ContractError) as info:
        parse_fix(raw)
    letter = bridge_letter(raw, Rejection.from_contract(info.value))
    obj = orjson.loads(letter.to_json())
    assert (obj["v"], obj["code"], obj["stage"], obj["instance"]) == (2, "malformed_json", "bridge", "a")
    assert obj["source_topic"] == "fleetwatch/v1/telemetry/d1"
    assert obj["received_at"] == "2026-03-02T01:02:03+00:00"
    assert "source_partition" not in obj and "extra" not in obj  # unknown for MQTT; nothing extra
    back = parse_dead_letter(letter.to_json())
    assert back == letter
    assert back.payload == raw


def test_every_stage_writes_the_same_shape_with_its_own_facts() -> None:
    rejection = Rejection("db_rejected", "seq", "out of range", "positions: the database refused the record")
    letter = DeadLetter.of(
        rejection, payload=b"", source_topic="fleetwatch.telemetry.v1", received_at=RECEIVED,
        stage=DeadLetterStage.SINK, instance="sink-g", source_partition=2, source_offset=7,
        extra={"table": "positions", "sqlstate": "22003"},
    )  # fmt: skip
    obj = orjson.loads(letter.to_json())
    assert (obj["source_partition"], obj["source_offset"], obj["payload_b64"]) == (2, 7, "")
    assert obj["extra"] == {"table": "positions", "sqlstate": "22003"}
    assert parse_dead_letter(letter.to_json()) == letter


def test_parse_names_the_broken_field() -> None:
    good = orjson.loads(bridge_letter(b"x", Rejection("bad_topic", None, "r", "m")).to_json())
    for name, value, code in (
        ("reason", None, "missing_field"),
        ("stage", "mqtt", "bad_value"),
        ("payload_b64", "***", "bad_value"),
        ("original_size", 0, "bad_value"),
        ("truncated", "no", "bad_type"),
        ("v", 7, "unknown_version"),
    ):
        with pytest.raises(ContractError) as info:
            parse_dead_letter(good | {name: value})
        assert (info.value.code, info.value.field) == (code, name)


def test_a_cut_payload_is_marked_with_its_original_size() -> None:
    rejection = Rejection("too_large", None, "payload over the limit", "payload of 300000 bytes ...")
    letter = bridge_letter(b"y" * 300_000, rejection, keep_bytes=1000)
    obj = orjson.loads(letter.to_json())
    assert (obj["original_size"], obj["truncated"]) == (300_000, True)
    assert len(parse_dead_letter(letter.to_json()).payload) == 1000
    default = bridge_letter(b"y" * (DEAD_LETTER_KEEP_BYTES + 1), rejection)
    assert len(default.payload) == DEAD_LETTER_KEEP_BYTES and default.truncated
    whole = bridge_letter(b"z" * 10, rejection)
    assert (whole.original_size, whole.truncated) == (10, False)
    assert parse_dead_letter(whole.to_json()) == whole


def test_v1_letters_of_the_bridge_and_the_gateway_still_parse() -> None:
    v1 = {
        "v": 1, "code": "bad_topic", "field": None, "reason": "r", "message": "m",
        "source_topic": "jt808/013800000000", "received_at": "2026-03-02T01:02:03+00:00",
        "payload_b64": base64.b64encode(b"abc").decode(), "bridge": "jt808-gw1",
    }  # fmt: skip
    letter = parse_dead_letter(orjson.dumps(v1))  # from before the size fields, too
    assert (letter.stage, letter.instance, letter.payload) == (DeadLetterStage.JT808, "gw1", b"abc")
    assert (letter.original_size, letter.truncated) == (3, False)
    bridge = parse_dead_letter(v1 | {"bridge": "b", "original_size": 9, "truncated": True})
    assert (bridge.stage, bridge.instance, bridge.original_size, bridge.truncated) == ("bridge", "b", 9, True)
