"""`fleetwatch watch` bookkeeping without Kafka: gaps, repeats, rate, whose dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetwatch.records import DeadLetter, DeadLetterStage, Fix, Rejection
from ingest.watch import Watch, describe

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fix(seq: int, at: datetime, device: str = "dev-1", vehicle: str = "苏A1") -> Fix:
    return Fix(device, vehicle, at, 32.0, 118.8, 30.0, 90.0, True, seq)


def letter(device: str, payload: bytes = b"{}") -> DeadLetter:
    return DeadLetter.of(
        Rejection("vehicle_mismatch", "vehicle_id", "r", "field 'vehicle_id': ..."),
        payload=payload,
        source_topic=f"fleetwatch/v1/telemetry/{device}",
        received_at=T0,
        stage=DeadLetterStage.BRIDGE,
        instance="b",
    )


def test_seq_and_time_gaps_repeats_and_age() -> None:
    watch = Watch(device_id="dev-1")
    watch.add_fix(fix(1, T0), T0 + timedelta(seconds=2))
    ev = watch.add_fix(fix(5, T0 + timedelta(seconds=10)), T0 + timedelta(seconds=11))
    assert ev.seq_gap == 3 and ev.time_gap_s == 0
    ev = watch.add_fix(fix(6, T0 + timedelta(seconds=200)), T0 + timedelta(seconds=201))
    assert ev.seq_gap == 0 and ev.time_gap_s == 190
    ev = watch.add_fix(fix(6, T0 + timedelta(seconds=200)), T0 + timedelta(seconds=205))
    assert ev.repeated and ev.age_s == 5
    assert (watch.fixes, watch.gaps, watch.missing_seqs, watch.repeats) == (4, 2, 3, 1)
    assert "gap: 3 seq missing" in describe(watch.events[1])[4].plain
    assert "gap: silent 3 min" in describe(watch.events[2])[4].plain


def test_rate_counts_the_last_minute() -> None:
    watch = Watch(device_id="dev-1")
    for i in range(10):
        watch.add_fix(fix(i, T0 + timedelta(seconds=10 * i)), T0 + timedelta(seconds=10 * i))
    assert watch.rate_per_min(T0 + timedelta(seconds=95)) == 6  # landed at 40..90 s


def test_dead_letters_of_the_device_or_vehicle() -> None:
    by_device = Watch(device_id="dev-1")
    assert by_device.matches_letter(letter("dev-1"))
    assert not by_device.matches_letter(letter("dev-2"))
    by_vehicle = Watch(vehicle_id="苏A1")
    assert by_vehicle.matches_letter(letter("dev-9", '{"vehicle_id": "苏A1"}'.encode()))
    assert not by_vehicle.matches_letter(letter("dev-9", b"\xff binary"))
    by_vehicle.add_fix(fix(1, T0), T0)  # now its terminal is known
    assert by_vehicle.matches_letter(letter("dev-1", b"\xff binary"))
    assert "DEAD LETTER vehicle_mismatch" in describe(by_device.add_letter(letter("dev-1"), T0))[4].plain


def test_prefilter_matches_the_bridges_canonical_json() -> None:
    record = fix(1, T0, vehicle="苏A12345").to_json()
    assert Watch(device_id="dev-1").may_match(record)
    assert Watch(vehicle_id="苏A12345").may_match(record)
    assert not Watch(device_id="dev-10").may_match(record)
