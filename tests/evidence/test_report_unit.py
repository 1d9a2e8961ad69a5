"""Evidence pieces without a database: stops, places and datums, the SVG projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence.build import EvidenceError, parse_local_time, parse_place
from evidence.query import Point, distance_m, find_stops
from evidence.report import MAP_H, MAP_W, Projection
from geofence import wgs84_to_gcj02

T0 = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)


def test_stops_need_five_stationary_minutes() -> None:
    moving = [Point(T0 + timedelta(seconds=30 * i), 32.0 + i * 1e-4, 118.8, 40, True) for i in range(10)]
    parked = [Point(moving[-1].ts + timedelta(seconds=60 * i), 32.001, 118.8, 0, False) for i in range(1, 8)]
    short = [Point(parked[-1].ts + timedelta(seconds=30 * i), 32.002, 118.8, 1, True) for i in range(1, 5)]
    after = [Point(short[-1].ts + timedelta(seconds=30), 32.003, 118.8, 30, True)]
    [stop] = find_stops(moving + parked + short + after)
    assert stop.start == parked[0].ts and stop.end == short[-1].ts


def test_place_in_gcj02_is_converted_to_wgs84() -> None:
    glat, glon = wgs84_to_gcj02(32.0418, 118.7845)
    lat, lon = parse_place(f"{glat},{glon}", "GCJ-02")
    assert distance_m(lat, lon, 32.0418, 118.7845) < 0.5
    assert distance_m(glat, glon, 32.0418, 118.7845) > 300  # the offset being removed is real


@pytest.mark.parametrize(
    ("value", "datum", "message"),
    [("118.78,32.04,1", "WGS-84", "is not LAT,LON"), ("95,118", "WGS-84", "out of range"),
     ("32.0,118.7", "BD-09", "--datum: unknown datum 'BD-09'")],
)  # fmt: skip
def test_bad_places_are_explained(value: str, datum: str, message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        parse_place(value, datum)


def test_local_times_default_to_the_configured_zone() -> None:
    assert parse_local_time("2026-11-27 21:00", "--from", "Asia/Shanghai") == datetime(
        2026, 11, 27, 13, tzinfo=UTC
    )
    with pytest.raises(EvidenceError, match="--to: 'friday night'"):
        parse_local_time("friday night", "--to", "Asia/Shanghai")


@given(st.lists(st.tuples(st.floats(31.0, 33.0), st.floats(118.0, 120.0)), min_size=1, max_size=50))
def test_projection_keeps_every_point_inside_the_map(points: list[tuple[float, float]]) -> None:
    proj = Projection(points)
    for lat, lon in points:
        x, y = proj(lat, lon)
        assert -0.5 <= x <= MAP_W + 0.5 and -0.5 <= y <= MAP_H + 0.5
