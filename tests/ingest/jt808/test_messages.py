"""Message bodies: the published captures decode to the values their publishers list; round trips."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.jt808 import messages as m
from ingest.jt808.codec import FrameError, decode_frame
from tests.ingest.jt808 import frames as published


def body(wire: bytes) -> bytes:
    return decode_frame(wire[1:-1]).body


def test_huabao_location_matches_the_blogs_breakdown() -> None:
    loc = m.decode_location(body(published.HUABAO_0200))
    assert loc.alarm == 0x00020000 and loc.status == 0x000C0002
    assert (loc.lat, loc.lon) == (0x0158B91B / 1e6, 0x06CB7061 / 1e6)  # 22.591771, 113.995873
    assert (loc.alt_m, loc.speed_kmh, loc.heading) == (0x46, 0.0, 0x59)
    assert loc.time == datetime(2021, 9, 22, 16, 37, 58, tzinfo=m.BEIJING)
    assert (loc.mileage_km, loc.recorder_speed_kmh, loc.signal, loc.sats) == (0.1, 0.0, 0x11, 0x10)
    assert not loc.acc and loc.positioned
    # Vendor items (extended signal 0x25, 0xE3, the lock data 0xD5) are kept raw, not dropped.
    assert set(loc.extra) == {0x25, 0xE3, 0xD5} and len(loc.extra[0xD5]) == 0x1B


def test_huabao_authentication_and_general_response() -> None:
    assert m.decode_authentication(body(published.HUABAO_0102), version=None).auth_code == "8300200260432"
    assert m.decode_general_response(body(published.HUABAO_8001)) == (0x00EE, 0x0200, m.RESULT_OK)


def test_blind_area_batch_2013() -> None:
    batch = m.decode_batch(body(published.TRACCAR_0704_BLIND_2013))
    assert batch.blind_area and len(batch.locations) == 1
    (loc,) = batch.locations
    assert loc.sats == 14 and loc.time == datetime(2026, 8, 17, 22, 18, 12, tzinfo=m.BEIJING)
    assert loc.acc and loc.positioned and loc.mileage_km == 1402.5


def test_batch_2019_south_and_east_signs() -> None:
    batch = m.decode_batch(body(published.TRACCAR_0704_2019))
    assert not batch.blind_area
    (loc,) = batch.locations
    assert loc.status & m.STATUS_SOUTH and loc.lat == -27.263378 and loc.lon == 153.037383
    assert loc.sats == 14


def test_batch_of_eight() -> None:
    batch = m.decode_batch(body(published.TRACCAR_0704_8))
    assert len(batch.locations) == 8
    times = [loc.time for loc in batch.locations]
    assert times == sorted(times) and times[0] == datetime(2016, 5, 27, 9, 6, 24, tzinfo=m.BEIJING)


def test_registrations_of_three_editions() -> None:
    reg2019 = m.decode_registration(body(published.TRACCAR_0100_2019), version=1)
    assert (reg2019.model, reg2019.terminal_id, reg2019.plate_color) == ("MD300", "866496077582164", 4)
    reg2013 = m.decode_registration(body(published.TRACCAR_0100_2013), version=None)
    assert (reg2013.model, reg2013.terminal_id, reg2013.plate) == ("HB-R03GBD", "2366104", "苏BA6860")
    reg2011 = m.decode_registration(body(published.TRACCAR_0100_2011), version=None)
    assert reg2011.plate == "粤B88888" and reg2011.plate_color == 1


def test_heartbeat_has_an_empty_body() -> None:
    assert body(published.TRACCAR_0002) == b""


def test_a_location_cut_short_names_the_item() -> None:
    raw = body(published.HUABAO_0200)
    with pytest.raises(FrameError) as info:
        m.decode_location(raw[:-3])
    assert info.value.code == "truncated" and "0xd5" in (info.value.field or "")


def test_a_bad_time_is_a_bad_value() -> None:
    raw = bytearray(body(published.TRACCAR_0200))
    raw[22:28] = bytes.fromhex("261341120000")  # month 13
    with pytest.raises(FrameError) as info:
        m.decode_location(bytes(raw))
    assert (info.value.code, info.value.field) == ("bad_value", "time")


# ------------------------------------------------------------------------------ properties

locations = st.builds(
    m.Location,
    alarm=st.integers(0, 2**32 - 1),
    status=st.integers(0, 2**32 - 1),
    lat=st.integers(-90_000_000, 90_000_000).map(lambda v: v / 1e6),
    lon=st.integers(-180_000_000, 180_000_000).map(lambda v: v / 1e6),
    alt_m=st.integers(-500, 9000),
    speed_kmh=st.integers(0, 2500).map(lambda v: v / 10),
    heading=st.integers(0, 359),
    time=st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0, tzinfo=m.BEIJING)
    ),
    mileage_km=st.none() | st.integers(0, 2**32 - 1).map(lambda v: v / 10),
    fuel_l=st.none() | st.integers(0, 0xFFFF).map(lambda v: v / 10),
    recorder_speed_kmh=st.none() | st.integers(0, 0xFFFF).map(lambda v: v / 10),
    signal=st.none() | st.integers(0, 255),
    sats=st.none() | st.integers(0, 255),
    extra=st.dictionaries(st.integers(0x04, 0x2F), st.binary(max_size=20), max_size=3),
)


def _same(a: m.Location, b: m.Location) -> None:
    # the sign bits are derived from the coordinates' signs
    assert a.status & ~(m.STATUS_SOUTH | m.STATUS_WEST) == b.status & ~(m.STATUS_SOUTH | m.STATUS_WEST)
    assert (abs(a.lat), abs(a.lon)) == (abs(b.lat), abs(b.lon))
    assert (a.alarm, a.alt_m, a.speed_kmh, a.heading, a.time) == (
        b.alarm,
        b.alt_m,
        b.speed_kmh,
        b.heading,
        b.time,
    )
    assert (a.mileage_km, a.fuel_l, a.recorder_speed_kmh, a.signal, a.sats) == (
        b.mileage_km, b.fuel_l, b.recorder_speed_kmh, b.signal, b.sats,
    )  # fmt: skip
    assert a.extra == b.extra


@given(locations)
def test_location_round_trip(loc: m.Location) -> None:
    _same(m.decode_location(m.encode_location(loc)), loc)


@given(st.lists(locations, min_size=1, max_size=5), st.booleans())
def test_batch_round_trip(locs: list[m.Location], blind: bool) -> None:
    batch = m.decode_batch(m.encode_batch(locs, blind_area=blind))
    assert batch.blind_area == blind and len(batch.locations) == len(locs)
    for got, want in zip(batch.locations, locs, strict=True):
        _same(got, want)


@given(st.binary(max_size=300))
def test_arbitrary_bodies_raise_only_frame_errors(data: bytes) -> None:
    decoders: list[Callable[[bytes], object]] = [m.decode_location, m.decode_batch]
    for version in (None, 1):
        decoders.append(partial(m.decode_registration, version=version))
        decoders.append(partial(m.decode_authentication, version=version))
    for decode in decoders:
        with contextlib.suppress(FrameError):  # anything else fails the test
            decode(data)


def test_time_is_converted_from_any_zone() -> None:
    utc = datetime(2026, 2, 13, 16, 30, tzinfo=UTC)  # = 2026-02-14 00:30 in Beijing
    assert m.decode_time(m.encode_time(utc)).isoformat() == "2026-02-14T00:30:00+08:00"
