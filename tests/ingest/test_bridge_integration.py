"""Devices -> Mosquitto -> bridge -> Kafka on the real stack: delivery, order, dead letters, spoofs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import orjson
import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets, read_topic
from fleetwatch.records import DEAD_LETTER_KEEP_BYTES, parse_dead_letter
from fleetwatch.settings import Settings
from tests.ingest.helpers import (
    BridgeProcess,
    DevicePublisher,
    fix_json,
    fixes_of,
    only,
    register_devices,
    wait_for,
)

pytestmark = pytest.mark.integration

FIXES_PER_DEVICE = 60


def first_occurrence_seqs(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def test_valid_fixes_arrive_in_order_and_bad_ones_are_dead_lettered(
    stack: Settings, unique: str, bridges: Callable[..., BridgeProcess]
) -> None:
    devices = register_devices(stack, unique, 4)
    a, b = devices[0], devices[1]
    since_fix = end_offsets(stack, topics.TELEMETRY)
    since_dlq = end_offsets(stack, topics.TELEMETRY_DLQ)

    # (publishing device, payload, expected reason code)
    bad: list[tuple[str, bytes, str]] = [
        (a.device_id, b"{not json " + unique.encode(), "malformed_json"),
        (a.device_id, b"\xff\xfe\x00" + unique.encode(), "malformed_json"),
        (a.device_id, fix_json(a, 9001, lat=None), "missing_field"),
        (a.device_id, fix_json(a, 9002, speed_kmh=999.0), "impossible_speed"),
        (a.device_id, fix_json(a, 9003, lat=118.78, lon=32.04), "swapped_coordinates"),
        (a.device_id, fix_json(a, 9004, v=2), "unknown_version"),
        # Spoofs: A's account claiming to be B (ids both registered), and A claiming B's vehicle.
        (a.device_id, fix_json(b, 9005), "topic_device_mismatch"),
        (a.device_id, fix_json(a, 9006, vehicle_id=b.vehicle_id), "vehicle_mismatch"),
        (b.device_id, fix_json(b, 9007, vehicle_id="苏A00000"), "vehicle_mismatch"),
        # A valid fix padded with a 20 KB unknown field, and 300 KB of junk (cut in the DLQ).
        (a.device_id, fix_json(a, 9008, blob="x" * 20_000), "too_large"),
        (a.device_id, b"j" * 300_000, "too_large"),
        (a.device_id, fix_json(a, 9009).replace(b'"lon":118.78', b'"lon":NaN'), "malformed_json"),
        (a.device_id, bytes(range(256)) * 16, "malformed_json"),
    ]
    bridge = bridges(f"it-{unique}", extra=only(devices))
    with bridge:
        pubs = {d.device_id: DevicePublisher(stack, d).__enter__() for d in devices}
        try:
            for seq in range(FIXES_PER_DEVICE):
                for d in devices:
                    pubs[d.device_id].publish(fix_json(d, seq))
                if seq % 20 == 10:  # interleave the bad ones with good traffic
                    for device_id, payload, _ in bad[seq // 20 :: 3]:
                        pubs[device_id].publish(payload)
        finally:
            for pub in pubs.values():
                pub.__exit__(None, None, None)
        expected_total = FIXES_PER_DEVICE * len(devices) + len(bad)
        wait_for(lambda: bridge.metrics().get("acked", 0) >= expected_total, 60, "all messages acked")
        metrics = bridge.metrics()

    # Every valid fix arrived, exactly as sent (no loss), in per-vehicle order within one partition.
    got = fixes_of(stack, topics.TELEMETRY, {d.device_id for d in devices}, since=since_fix)
    by_device: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for partition, offset, fix in got:
        by_device[fix.device_id].append((partition, offset, fix.seq))
    assert set(by_device) == {d.device_id for d in devices}
    for d in devices:
        rows = sorted(by_device[d.device_id])
        assert {p for p, _, _ in rows} == {rows[0][0]}, f"{d.device_id}: fixes spread over partitions"
        seqs = first_occurrence_seqs([s for _, _, s in rows])
        assert seqs == list(range(FIXES_PER_DEVICE)), f"{d.device_id}: out of order or missing: {seqs}"
    assert all(
        fix.vehicle_id == {d.device_id: d.vehicle_id for d in devices}[fix.device_id] for *_, fix in got
    )

    # Every rejected message is in the DLQ with its original bytes, reason and source topic.
    ours = {stack.telemetry_topic(d.device_id) for d in devices}
    letters = [
        parse_dead_letter(r.value)
        for r in read_topic(stack, topics.TELEMETRY_DLQ, since=since_dlq, timeout_s=60)
        if orjson.loads(r.value)["source_topic"] in ours
    ]
    found = {(dl.source_topic, dl.payload): dl for dl in letters}
    for device_id, payload, code in bad:
        letter = found.get((stack.telemetry_topic(device_id), payload[:DEAD_LETTER_KEEP_BYTES]))
        assert letter is not None, f"{code} payload from {device_id} not in the DLQ"
        assert letter.code == code, (letter.code, letter.message)
        assert letter.message and letter.reason
        assert letter.original_size == len(payload)
        assert letter.truncated == (len(payload) > DEAD_LETTER_KEEP_BYTES)
    messages = {letter.code + ":" + letter.message for letter in letters}
    assert any("field 'lon': NaN is not a JSON number" in m for m in messages), messages
    assert any("not UTF-8 text: byte 0x80 at offset 128 of 4096" in m for m in messages), messages
    assert any("payload of 300000 bytes is over the 16384-byte limit" in m for m in messages), messages
    assert not any(fix.seq >= 9000 for *_, fix in got), "a rejected fix leaked into the telemetry topic"

    # The counters agree with what happened.
    assert metrics["produced"] >= FIXES_PER_DEVICE * len(devices)
    assert metrics["rejected:vehicle_mismatch"] >= 2
    assert metrics["rejected:topic_device_mismatch"] >= 1
    assert metrics["rejected:malformed_json"] >= 4
    assert metrics["rejected:too_large"] >= 2
