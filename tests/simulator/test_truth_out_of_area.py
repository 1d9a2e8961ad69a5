"""Out-of-area truth on hand-built fixes: jitter within the buffer neither starts nor ends an excursion."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
from shapely.geometry import Point

from simulator._dataset import Dataset
from simulator._geography import M_PER_DEG_LAT, distance_outside_m, m_per_deg_lon, offset
from simulator._motion import TZ, Sample, iso
from simulator._scenarios import BORDER_EDGE, DATES, Run, _truth_out_of_area

CADENCE_S = 10


def _outward(run: Run, clean: Dataset) -> tuple[float, float, float, float]:
    """Midpoint of the border edge and the unit normal (north, east) pointing out of the region."""
    (la, oa), (lb, ob) = BORDER_EDGE
    lat, lon = (la + lb) / 2, (oa + ob) / 2
    east, north = (ob - oa) * m_per_deg_lon(la), (lb - la) * M_PER_DEG_LAT
    length = math.hypot(east, north)
    n_north, n_east = -east / length, north / length
    region = clean.world.geo.city(run.vehicle.city).polygon
    probe = offset(lat, lon, n_north * 300, n_east * 300)
    if region.contains(Point(probe[1], probe[0])):
        n_north, n_east = -n_north, -n_east
    return lat, lon, n_north, n_east


def _fixes(run: Run, clean: Dataset, metres_outside: list[float]) -> list[Sample]:
    """One valid fix every CADENCE_S seconds at each signed distance (negative: inside)."""
    lat, lon, n_north, n_east = _outward(run, clean)
    t0 = int(datetime.combine(DATES["workday"], datetime.min.time(), TZ).timestamp()) + 10 * 3600
    region = clean.world.geo.city(run.vehicle.city).polygon
    out = []
    for k, m in enumerate(metres_outside):
        plat, plon = offset(lat, lon, n_north * m, n_east * m)
        # the construction must put each fix where the test says it is
        got = distance_outside_m(region, plat, plon)
        assert got == pytest.approx(max(m, 0.0), abs=2.0), (k, m, got)
        out.append(Sample(t0 + k * CADENCE_S, plat, plon, 40.0, 0, True, 0.0, 9))
    return out


def _truth(run: Run, clean: Dataset, fixes: list[Sample]) -> list[dict[str, Any]]:
    hand = Run(scenario="hand_built", vehicle=run.vehicle, samples=fixes, received=fixes, drives=[])
    return _truth_out_of_area(hand, fixes, clean.world)


@pytest.fixture
def border_run(clean: Dataset) -> Run:
    return next(r for r in clean.runs if r.scenario == "boundary_jitter")


def test_return_jittering_across_the_boundary_does_not_split_an_excursion(
    clean: Dataset, border_run: Run
) -> None:
    path = (
        [-1000.0] * 3  # deep inside: nothing open
        + [500.0] * 9  # out beyond the buffer for 80 s: would qualify on its own
        + [-50.0, -50.0, 80.0, -50.0, -50.0, -50.0, 80.0, -50.0]  # jitter, each inside stretch < 60 s
        + [400.0] * 8  # out again for 70 s: would qualify on its own too
        + [80.0]  # last fix outside (within the buffer) before returning
        + [-50.0] * 8  # back within the buffer for 70 s and 8 fixes: settled, excursion over
        + [-1000.0] * 2
    )
    fixes = _fixes(border_run, clean, path)
    lines = _truth(border_run, clean, fixes)
    assert len(lines) == 1, lines
    (line,) = lines
    first_beyond = fixes[3]
    last_outside = fixes[3 + 9 + 8 + 8]
    assert path[3] == 500.0 and path[3 + 9 + 8 + 8] == 80.0
    assert (line["start"], line["end"]) == (iso(first_beyond.t), iso(last_outside.t))
    assert line["type"] == "out_of_area" and line.get("expect", True) is True
    assert line["note"].startswith("17 fixes beyond")


def test_settled_return_within_the_buffer_ends_an_excursion(clean: Dataset, border_run: Run) -> None:
    path = [500.0] * 8 + [-50.0] * 8 + [500.0] * 8 + [-50.0] * 2
    fixes = _fixes(border_run, clean, path)
    lines = _truth(border_run, clean, fixes)
    assert [(ln["start"], ln["end"]) for ln in lines] == [
        (iso(fixes[0].t), iso(fixes[7].t)),
        (iso(fixes[16].t), iso(fixes[23].t)),  # still open at the end of input: closed there
    ]


def test_a_fix_deep_inside_ends_an_excursion_at_once(clean: Dataset, border_run: Run) -> None:
    path = [500.0] * 8 + [-300.0] + [500.0] * 8 + [-1000.0]
    fixes = _fixes(border_run, clean, path)
    lines = _truth(border_run, clean, fixes)
    assert len(lines) == 2, lines
    assert lines[0]["end"] == iso(fixes[7].t) and lines[1]["start"] == iso(fixes[9].t)


def test_jitter_within_the_buffer_alone_starts_nothing(clean: Dataset, border_run: Run) -> None:
    fixes = _fixes(border_run, clean, [180.0, -50.0, 150.0, 190.0, -120.0] * 4)
    assert _truth(border_run, clean, fixes) == []
