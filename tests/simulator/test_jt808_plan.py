"""The JT/T 808 terminal plan: live reports, blind-area batches for backlogs, corrupt frames for garbage."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from ingest.jt808 import messages as m
from simulator._jt808 import BATCH_ITEMS, BLIND_AFTER_S, location_of, phone_for, plan

T0 = 1_771_000_000  # 2026-02-13


def _fix(t: int, **changes: object) -> bytes:
    obj: dict[str, object] = {
        "v": 1, "device_id": "sim-1", "vehicle_id": "苏A1", "lat": 32.0412346, "lon": 118.7812346,
        "ts": datetime.fromtimestamp(t, UTC).isoformat(), "speed_kmh": 36.04, "heading": 359.6,
        "acc": True, "seq": t, "odometer_km": 12.345, "alt_m": 12.0, "sats": 9, "alarm": 256,
        "fix_valid": False,
    }  # fmt: skip
    obj.update(changes)
    return orjson.dumps(obj)


def test_location_of_a_simulator_fix() -> None:
    loc = location_of(orjson.loads(_fix(T0)))
    assert (loc.lat, loc.lon, loc.speed_kmh, loc.heading, loc.mileage_km) == (
        32.0412346,
        118.7812346,
        36.0,
        0,
        12.3,
    )
    assert loc.acc and not loc.positioned and loc.alarm == 256 and loc.sats == 9
    assert loc.time.timestamp() == T0
    # what the terminal puts on the wire is what the gateway reads back (1e-6 degree resolution)
    back = m.decode_location(m.encode_location(loc))
    assert (back.lat, back.lon) == (32.041235, 118.781235)


def test_backlog_becomes_blind_area_batches_in_order() -> None:
    live = [(float(T0 + i * 10), T0 + i * 10, "fix", _fix(T0 + i * 10)) for i in range(3)]
    late_t = [T0 + 100 + i * 10 for i in range(BATCH_ITEMS + 3)]
    sent_at = float(late_t[-1] + BLIND_AFTER_S + 600)
    backlog = [(sent_at, t, "fix", _fix(t)) for t in late_t]
    after = [(sent_at + 1, int(sent_at) + 1, "fix", _fix(int(sent_at) + 1))]
    garbage = [(sent_at + 2, int(sent_at) + 2, "malformed", b"{not json")]
    steps = plan([*live, *backlog, *after, *garbage])
    assert [s.kind for s in steps] == ["report"] * 3 + ["blind_batch", "blind_batch", "report", "corrupt"]
    assert [len(s.locations) for s in steps[3:5]] == [BATCH_ITEMS, 3]
    assert [int(loc.time.timestamp()) for s in steps[3:5] for loc in s.locations] == late_t


def test_phone_numbers_are_stable_11_digit_numbers() -> None:
    assert phone_for("sim-1") == phone_for("sim-1") != phone_for("sim-2")
    assert len(phone_for("sim-1")) == 11 and phone_for("sim-1").isdigit()
