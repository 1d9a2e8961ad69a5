"""GCJ-02 <-> WGS-84: published reference pairs, round trips, no offset outside China."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geofence import gcj02_to_wgs84, haversine_m, wgs84_to_gcj02

# (WGS-84 lat, lon) -> (GCJ-02 lat, lon), as published by widely used open implementations.
REFERENCE = [
    ((39.915, 116.404), (39.91640428150164, 116.41024449916938), 1e-9),  # coordtransform / hutool
    ((40.0, 116.0), (40.001213650174, 116.006141221789), 1e-6),
    ((30.6107779, 121.0917077), (30.608604331756705, 121.09626935575027), 1e-6),
]


@pytest.mark.parametrize(("wgs", "gcj", "tol"), REFERENCE)
def test_forward_matches_reference_pairs(
    wgs: tuple[float, float], gcj: tuple[float, float], tol: float
) -> None:
    lat, lon = wgs84_to_gcj02(*wgs)
    assert lat == pytest.approx(gcj[0], abs=tol)
    assert lon == pytest.approx(gcj[1], abs=tol)


@pytest.mark.parametrize(("wgs", "gcj", "tol"), REFERENCE)
def test_inverse_recovers_reference_wgs(
    wgs: tuple[float, float], gcj: tuple[float, float], tol: float
) -> None:
    lat, lon = gcj02_to_wgs84(*gcj)
    assert haversine_m(lat, lon, *wgs) < 0.05


def test_offset_in_nanjing_is_a_few_hundred_metres() -> None:
    lat, lon = wgs84_to_gcj02(32.0603, 118.7969)
    assert 100 < haversine_m(lat, lon, 32.0603, 118.7969) < 1000


def test_no_offset_outside_china() -> None:
    assert wgs84_to_gcj02(51.5072, -0.1276) == (51.5072, -0.1276)
    assert gcj02_to_wgs84(51.5072, -0.1276) == (51.5072, -0.1276)


@given(st.floats(18.0, 53.0), st.floats(74.0, 134.0))
def test_round_trip_within_one_metre(lat: float, lon: float) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(lat, lon))
    assert haversine_m(back[0], back[1], lat, lon) < 1.0
