"""Faults are applied at the configured rates and stay recoverable (dedup + reorder window)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import datetime

import orjson
import pytest

from fleetwatch.records import ContractError, parse_fix
from simulator._dataset import Dataset, build_scenarios
from simulator._faults import MALFORMED_KINDS, FaultConfig, Message, apply_faults, corrupt
from simulator._geography import haversine_m
from simulator._motion import TZ, MotionConfig
from simulator._scenarios import SCENARIOS
from tests.simulator.conftest import FAULTS

FAR = datetime.fromisoformat("2030-01-01T00:00:00+08:00")


def _stream(n: int) -> list[Message]:
    out = []
    for i in range(n):
        t = 1_795_000_000 + 10 * i
        fix = {
            "v": 1, "device_id": "D1", "vehicle_id": "A1", "ts": datetime.fromtimestamp(t, TZ).isoformat(),
            "lat": 32.0, "lon": 118.8, "speed_kmh": 40.0, "heading": 90, "acc": True, "seq": i + 1,
        }  # fmt: skip
        out.append(Message(float(t), t, i + 1, orjson.dumps(fix)))
    return out


def _binomial_ok(observed: int, n: int, p: float) -> bool:
    """Within 5 standard deviations: fails only if the rate is really wrong."""
    mean, sd = n * p, (n * p * (1 - p)) ** 0.5
    return abs(observed - mean) <= 5 * sd + 1


@pytest.mark.parametrize("p", [0.01, 0.1, 0.3])
def test_duplicate_rate(p: float) -> None:
    out = apply_faults(_stream(20000), FaultConfig(duplicates=p), random.Random(1))
    dups = sum(1 for m in out if m.kind == "duplicate")
    assert _binomial_ok(dups, 20000, p), dups
    # a duplicate is byte-identical to an original with the same seq
    originals = {m.seq: m.payload for m in out if m.kind == "fix"}
    assert all(originals[m.seq] == m.payload for m in out if m.kind == "duplicate")


@pytest.mark.parametrize("p", [0.05, 0.2])
def test_reorder_rate_and_bound(p: float) -> None:
    out = apply_faults(_stream(20000), FaultConfig(reorder=p), random.Random(2))
    delayed = sum(1 for m in out if m.emit > m.t)
    assert _binomial_ok(delayed, 20000, p), delayed
    assert max(m.emit - m.t for m in out) <= 30
    seqs = [m.seq for m in out]
    assert seqs != sorted(seqs) and sorted(seqs) == list(range(1, 20001))


@pytest.mark.parametrize("p", [0.01, 0.05])
def test_malformed_rate_and_every_one_is_rejected(p: float) -> None:
    out = apply_faults(_stream(20000), FaultConfig(malformed=p), random.Random(3))
    bad = [m for m in out if m.kind == "malformed"]
    assert _binomial_ok(len(bad), 20000, p), len(bad)
    assert sum(1 for m in out if m.kind == "fix") == 20000  # extra garbage, never a lost fix
    for m in bad:
        with pytest.raises(ContractError):
            parse_fix(m.payload, now=FAR)
    assert len({m.payload[:12] for m in bad}) > 2  # several different kinds of garbage


def test_late_bursts_hold_back_a_stretch_within_the_window() -> None:
    out = apply_faults(_stream(8640), FaultConfig(late_bursts=3.0), random.Random(4), days=1.0)
    late = [m for m in out if m.emit > m.t]
    assert late
    assert max(m.emit - m.t for m in late) <= 540
    # bursts: held messages go out together (several share one send instant)
    assert max(Counter(m.emit for m in late).values()) >= 5


def test_no_faults_is_identity() -> None:
    stream = _stream(100)
    assert apply_faults(stream, FaultConfig(), random.Random(5)) is stream


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_corruption_is_rejected_by_the_contract(clean: Dataset, kind: str) -> None:
    payload = clean.streams[0][40].payload
    with pytest.raises(ContractError):
        parse_fix(corrupt(payload, kind), now=FAR)


def test_faulty_dataset_rates_and_recoverability(clean: Dataset, faulty: Dataset) -> None:
    fixes = faulty.count("fix")
    assert fixes == clean.count("fix")
    assert _binomial_ok(faulty.count("duplicate"), fixes, FAULTS.duplicates)
    assert _binomial_ok(faulty.count("malformed"), fixes, FAULTS.malformed)
    for _v, m in faulty.messages():
        if m.kind == "malformed":
            with pytest.raises(ContractError):
                parse_fix(m.payload, now=FAR)
    # dedup by (device, seq) over the good lines gives back exactly the clean data
    good = {}
    for _v, m in faulty.messages():
        if m.kind != "malformed":
            fix = parse_fix(m.payload, now=FAR)
            good[(fix.device_id, fix.seq)] = m.payload
    want = {}
    for _v, m in clean.messages():
        fix = parse_fix(m.payload, now=FAR)
        want[(fix.device_id, fix.seq)] = m.payload
    assert good == want


# ---------------------------------------------------------------- position faults of real traces

POSITION_FAULTS = MotionConfig(jump_rate=0.6, parked_drift_m=30.0, slow_share=0.4)


def _truth_kinds(ds: Dataset) -> Counter[tuple[str, str, bool]]:
    return Counter((t["type"], t["vehicle_id"], t.get("expect", True)) for t in ds.truth)


def test_position_faults_are_present_and_leave_the_truth_unchanged(clean: Dataset) -> None:
    faulty = build_scenarios(list(SCENARIOS), seed=7, motion=POSITION_FAULTS)
    samples = [s for r in faulty.runs for s in r.received]
    jumps = [s for s in samples if s.jump]
    assert len(jumps) >= 5
    assert _truth_kinds(faulty) == _truth_kinds(clean)
    # some vehicles report every 30 s while moving, the others every 10 s
    usual_step = Counter(
        Counter(b.t - a.t for a, b in itertools.pairwise(r.received) if a.acc and b.acc).most_common(1)[0][0]
        for r in faulty.runs
    )
    assert set(usual_step) == {10, 30} and min(usual_step.values()) >= 5


def test_parked_drift_stays_within_its_radius() -> None:
    ds = build_scenarios(["workday"], seed=3, motion=MotionConfig(parked_drift_m=30.0))
    parked = [s for s in ds.runs[0].received if not s.acc]
    first = parked[0]
    moved = max(haversine_m(first.lat, first.lon, s.lat, s.lon) for s in parked[:100])
    assert 5.0 < moved < 30.0 * 2 + 4 * 3.0  # drifts tens of metres, never beyond 2 x radius + noise
