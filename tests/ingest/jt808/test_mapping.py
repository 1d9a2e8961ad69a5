"""Location -> fix v1: status bits, signs, time zone, alarm word, and the contract's own rejections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fleetwatch.records import ContractError
from ingest.jt808 import messages as m
from ingest.jt808.codec import decode_frame
from ingest.jt808.mapping import location_to_fix
from tests.ingest.jt808 import frames as published

LIMITS = {"max_future": timedelta(minutes=5), "max_speed_kmh": 250.0}
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _loc(**changes: object) -> m.Location:
    base = m.Location(
        alarm=0, status=m.STATUS_ACC | m.STATUS_POSITIONED, lat=32.041, lon=118.778, alt_m=12,
        speed_kmh=36.5, heading=90, time=datetime(2026, 2, 14, 8, 0, 5, tzinfo=m.BEIJING),
        mileage_km=1234.5, sats=11,
    )  # fmt: skip
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    fields.update(changes)
    return m.Location(**fields)  # type: ignore[arg-type]


def test_published_huabao_report_maps_to_a_fix() -> None:
    loc = m.decode_location(decode_frame(published.HUABAO_0200[1:-1]).body)
    fix = location_to_fix(loc, device_id="2002604323", vehicle_id="粤B00001", now=NOW, **LIMITS)
    assert fix.ts.isoformat() == "2021-09-22T16:37:58+08:00"
    assert fix.ts == datetime(2021, 9, 22, 8, 37, 58, tzinfo=UTC)
    assert (fix.lat, fix.lon, fix.alt_m, fix.heading, fix.sats) == (22.591771, 113.995873, 70, 89, 16)
    assert fix.acc is False and fix.fix_valid is True
    assert fix.alarm == 0x00020000 and fix.odometer_km == 0.1
    assert fix.seq == int(fix.ts.timestamp())


def test_status_bits_and_alarm_word() -> None:
    fix = location_to_fix(_loc(status=0, alarm=1 << 8), device_id="1", vehicle_id="苏A1", now=NOW, **LIMITS)
    assert fix.acc is False and fix.fix_valid is False and fix.alarm == 256  # main power cut, unchanged
    fix = location_to_fix(_loc(), device_id="1", vehicle_id="苏A1", now=NOW, **LIMITS)
    assert fix.acc is True and fix.fix_valid is True and fix.speed_kmh == 36.5


def test_identity_comes_from_the_caller_not_the_frame() -> None:
    fix = location_to_fix(_loc(), device_id="13912345678", vehicle_id="苏A12345", now=NOW, **LIMITS)
    assert (fix.device_id, fix.vehicle_id) == ("13912345678", "苏A12345")


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"lat": 0.0, "lon": 0.0, "status": 0}, "out_of_range", "lat"),  # no position yet
        ({"speed_kmh": 300.0}, "impossible_speed", "speed_kmh"),
        ({"heading": 360}, "out_of_range", "heading"),
        ({"time": datetime(2026, 11, 29, 9, 0, tzinfo=m.BEIJING)}, "future_timestamp", "ts"),
    ],
)
def test_contract_rejections_are_the_contracts(changes: dict[str, object], code: str, field: str) -> None:
    with pytest.raises(ContractError) as info:
        location_to_fix(_loc(**changes), device_id="1", vehicle_id="苏A1", now=NOW, **LIMITS)
    assert (info.value.code, info.value.field) == (code, field)
