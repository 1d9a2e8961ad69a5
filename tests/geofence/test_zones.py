"""Zone files: loading each geometry kind, datum handling and validation errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from geofence import ZoneError, ZoneIndex, gcj02_to_wgs84, haversine_m, load_zone_file, wgs84_to_gcj02

SQUARE = [[118.6, 31.9], [119.0, 31.9], [119.0, 32.2], [118.6, 32.2], [118.6, 31.9]]


def feature(fid: str, geometry: dict[str, Any], kind: str = "region", **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"id": fid, "kind": kind, **props}, "geometry": geometry}


def write(tmp_path: Path, features: list[dict[str, Any]], datum: str | None = "WGS-84") -> Path:
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if datum is not None:
        doc["datum"] = datum
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def error_of(tmp_path: Path, features: list[dict[str, Any]], datum: str | None = "WGS-84") -> ZoneError:
    with pytest.raises(ZoneError) as info:
        load_zone_file(write(tmp_path, features, datum))
    return info.value


def test_polygon_circle_route_and_multipolygon_load(tmp_path: Path) -> None:
    zones = load_zone_file(
        write(
            tmp_path,
            [
                feature("r", {"type": "Polygon", "coordinates": [SQUARE]}),
                feature(
                    "c",
                    {"type": "Point", "coordinates": [118.8, 32.0]},
                    "sensitive",
                    category="golf",
                    radius_m=500,
                ),
                feature(
                    "w",
                    {"type": "LineString", "coordinates": [[118.7, 32.0], [118.8, 32.0]]},
                    "route",
                    buffer_m=100,
                ),
                feature("m", {"type": "MultiPolygon", "coordinates": [[SQUARE]]}),
            ],
        )
    )
    by_id = {z.id: z for z in zones}
    circle = by_id["c"]
    # 500 m radius measured in metres: 490 m east is inside, 510 m east is not.
    assert circle.contains(32.0, 118.8 + 490 / 94_450)
    assert not circle.contains(32.0, 118.8 + 510 / 94_450)
    route = by_id["w"]
    assert route.contains(32.0 + 90 / 111_195, 118.75)
    assert not route.contains(32.0 + 110 / 111_195, 118.75)
    assert by_id["m"].contains(32.0, 118.7)


def test_distance_outside_and_to_boundary_in_metres(tmp_path: Path) -> None:
    [region] = load_zone_file(write(tmp_path, [feature("r", {"type": "Polygon", "coordinates": [SQUARE]})]))
    lon_1km_east = 119.0 + 1000 / 94_450
    assert region.distance_m(32.05, lon_1km_east) == pytest.approx(1000, rel=0.01)
    assert region.distance_m(32.05, 118.9) == 0.0
    assert region.boundary_distance_m(32.05, 119.0 - 300 / 94_450) == pytest.approx(300, rel=0.01)


def test_gcj02_file_is_converted_to_wgs84(tmp_path: Path) -> None:
    wgs = (32.05, 118.78)
    gcj_lat, gcj_lon = wgs84_to_gcj02(*wgs)
    [zone] = load_zone_file(
        write(
            tmp_path,
            [feature("c", {"type": "Point", "coordinates": [gcj_lon, gcj_lat]}, "depot", radius_m=50)],
            datum="GCJ-02",
        )
    )
    centre = zone.geometry.centroid
    assert haversine_m(centre.y, centre.x, *wgs) < 1.0
    assert zone.contains(*wgs)
    assert not zone.contains(gcj_lat, gcj_lon)  # the GCJ-02 position is ~500 m away
    assert haversine_m(*gcj02_to_wgs84(gcj_lat, gcj_lon), *wgs) < 0.01


@pytest.mark.parametrize(
    ("datum", "message"),
    [(None, "missing datum"), ("BD-09", "unknown datum 'BD-09'"), ("EPSG:4326", "unknown datum")],
)
def test_missing_or_unknown_datum(tmp_path: Path, datum: str | None, message: str) -> None:
    err = error_of(tmp_path, [feature("r", {"type": "Polygon", "coordinates": [SQUARE]})], datum)
    assert message in str(err)
    assert "zones.geojson" in str(err)


def test_self_intersecting_ring_names_file_feature_and_reason(tmp_path: Path) -> None:
    bowtie = [[118.6, 31.9], [119.0, 32.2], [119.0, 31.9], [118.6, 32.2], [118.6, 31.9]]
    err = error_of(tmp_path, [feature("bow", {"type": "Polygon", "coordinates": [bowtie]})])
    assert err.feature == "'bow'"
    assert "Self-intersection" in err.reason
    assert str(err).startswith(str(tmp_path / "zones.geojson") + ": feature 'bow': invalid polygon")


def test_unclosed_and_too_short_rings(tmp_path: Path) -> None:
    assert (
        "not closed"
        in error_of(tmp_path, [feature("o", {"type": "Polygon", "coordinates": [SQUARE[:-1]]})]).reason
    )
    short = [[118.6, 31.9], [119.0, 31.9], [118.6, 31.9]]
    assert (
        "at least 4 positions"
        in error_of(tmp_path, [feature("s", {"type": "Polygon", "coordinates": [short]})]).reason
    )


def test_swapped_lat_lon_is_recognised(tmp_path: Path) -> None:
    swapped = [[lat, lon] for lon, lat in SQUARE]
    err = error_of(tmp_path, [feature("sw", {"type": "Polygon", "coordinates": [swapped]})])
    assert "look like (lat, lon)" in err.reason
    err = error_of(
        tmp_path, [feature("pt", {"type": "Point", "coordinates": [32.0, 118.8]}, "depot", radius_m=100)]
    )
    assert "look like (lat, lon)" in err.reason


def test_empty_geometry(tmp_path: Path) -> None:
    err = error_of(tmp_path, [feature("e", {"type": "Polygon", "coordinates": []})])
    assert err.reason == "empty Polygon geometry"


def test_circle_needs_radius_and_sensitive_needs_category(tmp_path: Path) -> None:
    err = error_of(tmp_path, [feature("c", {"type": "Point", "coordinates": [118.8, 32.0]}, "depot")])
    assert "radius_m" in err.reason
    err = error_of(
        tmp_path, [feature("k", {"type": "Point", "coordinates": [118.8, 32.0]}, "sensitive", radius_m=9)]
    )
    assert "'category' must be one of" in err.reason


def test_duplicate_ids(tmp_path: Path) -> None:
    f = feature("r", {"type": "Polygon", "coordinates": [SQUARE]})
    assert error_of(tmp_path, [f, f]).reason == "duplicate zone id"


def test_index_answers_like_a_linear_scan(tmp_path: Path) -> None:
    features = [
        feature(
            f"z{i}",
            {"type": "Point", "coordinates": [118.6 + i * 0.001, 32.0]},
            "sensitive",
            category="ktv",
            radius_m=150,
        )
        for i in range(200)
    ]
    index = ZoneIndex(load_zone_file(write(tmp_path, features)))
    for lon in (118.6, 118.65, 118.6999, 118.9):
        assert [z.id for z in index.containing(32.0, lon)] == [
            z.id for z in index.containing_linear(32.0, lon)
        ]
    assert len(index.containing(32.0, 118.65)) == 3  # neighbours 94 m apart, 150 m radius
