"""Terminals -> gateway -> the real Kafka: sessions, identity, acknowledgement after Kafka, dead letters."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets
from fleetwatch.settings import Settings
from ingest.jt808 import messages as m
from ingest.jt808.codec import Header, check_code, encode_frame, escape, unescape
from ingest.jt808.server import auth_code_for
from simulator._jt808 import Terminal, TerminalError
from tests.ingest.jt808 import frames as published
from tests.ingest.jt808.helpers import (
    RawTerminal,
    fixes_since,
    gateway_settings,
    letters_since,
    new_phone,
    register_terminals,
    running_gateway,
)

pytestmark = pytest.mark.integration


def _loc(seconds_ago: int, **changes: object) -> m.Location:
    when = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).replace(microsecond=0)
    values: dict[str, object] = {
        "alarm": 0, "status": m.STATUS_ACC | m.STATUS_POSITIONED, "lat": 32.05, "lon": 118.79,
        "alt_m": 15, "speed_kmh": 42.3, "heading": 181, "time": when.astimezone(m.BEIJING),
        "mileage_km": 101.2, "sats": 9, "signal": 20,
    }  # fmt: skip
    values.update(changes)
    return m.Location(**values)  # type: ignore[arg-type]


def _offsets(settings: Settings) -> tuple[dict[int, int], dict[int, int]]:
    return end_offsets(settings, topics.TELEMETRY), end_offsets(settings, topics.TELEMETRY_DLQ)


@pytest.mark.parametrize("edition", [None, 1], ids=["2013", "2019"])
def test_register_authenticate_report_batch(stack: Settings, tmp_path: Path, edition: int | None) -> None:
    phone, other = new_phone(), new_phone()
    registry = register_terminals(stack, {phone: "苏A80801", other: "苏A80802"})
    settings = gateway_settings(stack)
    since, _ = _offsets(settings)

    async def scenario() -> None:
        async with running_gateway(settings, registry) as gateway:
            terminal = Terminal(phone, "苏A80801", "127.0.0.1", gateway.port, version=edition)
            await terminal.start_session()  # no auth code yet: registers, then authenticates
            assert terminal.auth_code == auth_code_for("test-secret", phone)
            await terminal.heartbeat()
            await terminal.report(_loc(60))
            await terminal.batch([_loc(50 - i, speed_kmh=10.0 + i) for i in range(5)], blind_area=True)
            await terminal.close()
            assert gateway.stats["blind_area_batches"] == 1 and gateway.stats["fixes"] == 6

    asyncio.run(scenario())
    fixes = fixes_since(settings, since, {phone})
    assert len(fixes) == 6
    assert {f.vehicle_id for f in fixes} == {"苏A80801"}  # from the registry, not the frame
    first = fixes[0]
    assert (first.acc, first.fix_valid, first.speed_kmh, first.heading, first.odometer_km) == (
        True, True, 42.3, 181, 101.2,
    )  # fmt: skip
    assert first.ts.utcoffset() == timedelta(hours=8)
    assert sorted(f.speed_kmh for f in fixes[1:]) == [10.0, 11.0, 12.0, 13.0, 14.0]


def test_registration_and_authentication_refusals(stack: Settings, tmp_path: Path) -> None:
    phone = new_phone()
    registry = register_terminals(stack, {phone: "苏A80803"})
    settings = gateway_settings(stack)
    since_fix, since_dlq = _offsets(settings)

    async def scenario() -> None:
        async with running_gateway(settings, registry) as gateway:
            stranger = Terminal(new_phone(), "苏A00000", "127.0.0.1", gateway.port)
            await stranger.connect()
            with pytest.raises(TerminalError, match="result 4"):  # no such terminal
                await stranger.register()
            await stranger.close()
            wrong_plate = Terminal(phone, "苏B99999", "127.0.0.1", gateway.port)
            await wrong_plate.connect()
            with pytest.raises(TerminalError, match="result 2"):  # no such vehicle
                await wrong_plate.register()
            await wrong_plate.close()

            raw = await RawTerminal.open(gateway.port)
            # Location before authentication: dead-lettered, answered with failure.
            raw.send_message(m.LOCATION, phone, 1, m.encode_location(_loc(30)))
            reply = await raw.next_frame()
            assert reply is not None and m.decode_general_response(reply.body) == (1, m.LOCATION, 1)
            # Three wrong auth codes: failure each time, then the gateway hangs up.
            for flow in (2, 3, 4):
                raw.send_message(m.AUTHENTICATE, phone, flow, b"guessed-code")
                reply = await raw.next_frame()
                assert reply is not None
                assert m.decode_general_response(reply.body) == (flow, m.AUTHENTICATE, m.RESULT_FAILURE)
            assert await raw.closed_by_peer(5.0)
            assert gateway.stats["auth_failures"] == 3

    asyncio.run(scenario())
    assert fixes_since(settings, since_fix, {phone}) == []
    letters = letters_since(settings, since_dlq, "jt808/127.0.0.1")
    assert [d.code for d in letters] == ["not_authenticated"]


def test_bad_frames_are_dead_lettered_with_reason_and_hex_and_answered(
    stack: Settings, tmp_path: Path
) -> None:
    # The published capture with the wrong check code comes from terminal 013511221122.
    phone, victim = "13511221122", new_phone()
    registry = register_terminals(stack, {phone: "苏A80804", victim: "苏A80805"})
    settings = gateway_settings(stack)
    since_fix, since_dlq = _offsets(settings)

    async def scenario() -> None:
        async with running_gateway(settings, registry) as gateway:
            code = auth_code_for("test-secret", phone)
            raw = await RawTerminal.open(gateway.port)
            raw.send_message(m.AUTHENTICATE, phone, 1, code.encode())
            reply = await raw.next_frame()
            assert reply is not None and m.decode_general_response(reply.body)[2] == m.RESULT_OK

            raw.send(published.TRACCAR_0200_BAD_CHECK)  # flow 7, real terminal, wrong check code
            reply = await raw.next_frame()
            assert reply is not None and m.decode_general_response(reply.body) == (7, m.LOCATION, 2)

            good = encode_frame(Header(m.LOCATION, phone, 8), m.encode_location(_loc(20)))
            raw.send(good[:5] + b"\x7d\x05" + good[5:])  # bad escape: nothing trustworthy to answer
            plain = bytearray(
                unescape(encode_frame(Header(m.LOCATION, phone, 9), m.encode_location(_loc(19)))[1:-1])
            )
            del plain[-4:-1]  # truncated body, consistent check code
            plain[-1] = check_code(plain[:-1])
            raw.send(b"\x7e" + escape(bytes(plain)) + b"\x7e")
            reply = await raw.next_frame()
            assert reply is not None and m.decode_general_response(reply.body) == (9, m.LOCATION, 2)

            raw.send_message(0x0900, phone, 10, b"\x41transparent")  # not a message this gateway speaks
            reply = await raw.next_frame()
            assert reply is not None and m.decode_general_response(reply.body) == (10, 0x0900, 3)

            raw.send_message(m.LOCATION, victim, 11, m.encode_location(_loc(18)))  # reporting as another
            reply = await raw.next_frame()
            assert reply is not None and m.decode_general_response(reply.body) == (11, m.LOCATION, 1)

            raw.send_message(m.LOCATION, phone, 12, m.encode_location(_loc(17, speed_kmh=320.0)))
            reply = await raw.next_frame()  # contract rejection: durable in the DLQ, so acknowledged
            assert reply is not None and m.decode_general_response(reply.body) == (12, m.LOCATION, 0)

            raw.send_message(m.LOCATION, phone, 13, m.encode_location(_loc(16)))  # good data keeps flowing
            reply = await raw.next_frame()
            assert reply is not None and m.decode_general_response(reply.body) == (13, m.LOCATION, 0)
            raw.close()

    asyncio.run(scenario())
    letters = letters_since(settings, since_dlq, f"jt808/{phone}")
    by_code = {d.code: d for d in letters}
    assert sorted(by_code) == sorted(
        [
            "bad_check_code",
            "bad_escape",
            "truncated",
            "unknown_message",
            "identity_mismatch",
            "impossible_speed",
        ]
    )
    bad = by_code["bad_check_code"]
    assert bad.payload == published.TRACCAR_0200_BAD_CHECK
    assert published.TRACCAR_0200_BAD_CHECK.hex() in bad.message and "0xd0" in bad.reason
    assert by_code["identity_mismatch"].field == "phone" and victim in by_code["identity_mismatch"].message
    assert by_code["impossible_speed"].field == "speed_kmh"
    fixes = fixes_since(settings, since_fix, {phone, victim})
    assert [(f.device_id, f.vehicle_id) for f in fixes] == [(phone, "苏A80804")]  # only the good one


def test_reply_waits_for_kafka(stack: Settings, tmp_path: Path) -> None:
    """Kafka frozen: no answer to the report. Kafka back: the answer comes, and the fix is there."""
    phone = new_phone()
    registry = register_terminals(stack, {phone: "苏A80806"})
    settings = gateway_settings(stack)
    since, _ = _offsets(settings)
    kafka_pid = int((stack.stack_dir / "kafka" / "kafka.pid").read_text().split()[0])

    async def scenario() -> float:
        async with running_gateway(settings, registry) as gateway:
            terminal = Terminal(phone, "苏A80806", "127.0.0.1", gateway.port, reply_timeout_s=60, retries=0)
            await terminal.start_session()
            os.kill(kafka_pid, signal.SIGSTOP)
            try:
                frozen_at = time.monotonic()
                report = asyncio.create_task(terminal.report(_loc(5)))
                done, _ = await asyncio.wait({report}, timeout=4.0)
                assert not done, "0x8001 came back while Kafka could not have the fix"
            finally:
                os.kill(kafka_pid, signal.SIGCONT)
            await report
            waited = time.monotonic() - frozen_at
            await terminal.close()
            return waited

    waited = asyncio.run(scenario())
    assert waited >= 4.0
    assert len(fixes_since(settings, since, {phone})) == 1


def test_idle_timeout_rate_limit_and_subpackages(stack: Settings, tmp_path: Path) -> None:
    phone = new_phone()
    registry = register_terminals(stack, {phone: "苏A80807"})
    settings = gateway_settings(
        stack, jt808_idle_timeout_s=1.5, jt808_frames_per_s=10.0, jt808_burst_frames=5
    )
    since, _ = _offsets(settings)

    async def scenario() -> None:
        async with running_gateway(settings, registry) as gateway:
            idle = await RawTerminal.open(gateway.port)
            assert await idle.closed_by_peer(10.0)
            assert gateway.stats["idle_closed"] == 1

            raw = await RawTerminal.open(gateway.port)
            raw.send_message(m.AUTHENTICATE, phone, 1, auth_code_for("test-secret", phone).encode())
            assert (await raw.next_frame()) is not None
            started = time.monotonic()
            for flow in range(100, 125):  # 25 heartbeats at once: 5 burst, then 10/s
                raw.send_message(m.HEARTBEAT, phone, flow, b"")
            answered = [await raw.next_frame() for _ in range(25)]
            assert all(a is not None for a in answered)  # throttled, never dropped
            assert time.monotonic() - started >= 1.5
            assert gateway.stats["throttled"] > 0

            body = m.encode_batch([_loc(40 - i) for i in range(4)], blind_area=True)
            half = len(body) // 2
            for index, chunk in ((1, body[:half]), (2, body[half:])):
                header = Header(m.BATCH_LOCATION, phone, 200 + index, package_total=2, package_index=index)
                raw.send(encode_frame(header, chunk))
            replies = [await raw.next_frame() for _ in range(2)]
            assert [m.decode_general_response(r.body)[0] for r in replies if r] == [201, 202]
            raw.close()

    asyncio.run(scenario())
    assert len(fixes_since(settings, since, {phone})) == 4
