"""The dead-letter record keeps the original bytes, the reason and the source, and round-trips."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from fleetwatch.records import ContractError, parse_fix
from ingest.deadletter import DeadLetter, parse_dead_letter
from ingest.validate import Rejection


def test_round_trip_keeps_non_utf8_payload_and_reason() -> None:
    raw = b"\x00\xffnot json at all"
    try:
        parse_fix(raw)
    except ContractError as exc:
        rejection = Rejection.from_contract(exc)
    received = datetime(2026, 3, 2, 1, 2, 3, tzinfo=UTC)
    letter = DeadLetter.of(
        rejection, payload=raw, source_topic="fleetwatch/v1/telemetry/d1", received_at=received, bridge="a"
    )
    obj = orjson.loads(letter.to_json())
    assert obj["code"] == "malformed_json"
    assert obj["source_topic"] == "fleetwatch/v1/telemetry/d1"
    assert obj["received_at"] == "2026-03-02T01:02:03+00:00"
    back = parse_dead_letter(letter.to_json())
    assert back == letter
    assert back.payload == raw


def test_parse_names_the_broken_field() -> None:
    with pytest.raises(ContractError) as info:
        parse_dead_letter(orjson.dumps({"v": 1, "code": "x"}))
    assert info.value.field == "reason"
    with pytest.raises(ContractError) as info:
        parse_dead_letter(b'{"v": 7}')
    assert info.value.code == "unknown_version"


def test_a_cut_payload_is_marked_with_its_original_size() -> None:
    rejection = Rejection("too_large", None, "payload over the limit", "payload of 300000 bytes ...")
    raw = b"y" * 300_000
    received = datetime(2026, 3, 2, tzinfo=UTC)
    letter = DeadLetter.of(
        rejection, payload=raw, source_topic="t/d1", received_at=received, bridge="a", keep_bytes=1000
    )
    obj = orjson.loads(letter.to_json())
    assert (obj["original_size"], obj["truncated"]) == (300_000, True)
    assert len(parse_dead_letter(letter.to_json()).payload) == 1000
    whole = DeadLetter.of(rejection, payload=b"z" * 10, source_topic="t/d1", received_at=received, bridge="a")
    assert (whole.original_size, whole.truncated) == (10, False)
    assert parse_dead_letter(whole.to_json()) == whole


def test_letters_from_before_the_size_fields_still_parse() -> None:
    letter = DeadLetter.of(
        Rejection("bad_topic", None, "r", "m"),
        payload=b"abc",
        source_topic="t",
        received_at=datetime(2026, 3, 2, tzinfo=UTC),
        bridge="a",
    )
    old = letter.to_dict()
    del old["original_size"], old["truncated"]
    assert parse_dead_letter(orjson.dumps(old)) == letter
