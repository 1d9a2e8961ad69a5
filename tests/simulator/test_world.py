"""World directory files follow docs/world-format.md and the geography is consistent."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import orjson
import pytest
import yaml
from shapely.geometry import Point, shape

from simulator._dataset import Dataset, write_dataset
from simulator._geography import CATEGORIES, GRID_MARGIN_M, distance_outside_m
from simulator._world import build_world, device_password


@pytest.fixture(scope="module")
def world_dir(clean: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    write_dataset(clean, out)
    return out


def test_rules_yaml(world_dir: Path, clean: Dataset) -> None:
    rules = yaml.safe_load((world_dir / "rules.yaml").read_text(encoding="utf-8"))
    assert rules["version"] == 1 and rules["timezone"] == "Asia/Shanghai"
    orgs = {o["id"]: o for o in rules["orgs"]}
    assert orgs["js"]["settings"]["office_hours"] == {"start": "08:00", "end": "18:00"}
    for o in rules["orgs"]:
        if o["id"] != "js":
            assert o["parent"] in orgs
    zone_ids = set()
    for name in rules["zone_files"]:
        doc = orjson.loads((world_dir / name).read_bytes())
        assert doc["type"] == "FeatureCollection" and doc["datum"] == "WGS-84"
        zone_ids |= {f["properties"]["id"] for f in doc["features"]}
    assert orgs["js.nj"]["settings"]["permitted_region"] in zone_ids
    assert len(rules["vehicles"]) == len(clean.world.vehicles)
    for v in rules["vehicles"]:
        assert v["org"] in orgs and v["depot"] in zone_ids and orgs[v["org"]]["parent"].startswith("js.")


def test_zone_files(world_dir: Path) -> None:
    sensitive = orjson.loads((world_dir / "zones/sensitive.geojson").read_bytes())
    assert {f["properties"]["category"] for f in sensitive["features"]} == set(CATEGORIES)
    kinds = {f["geometry"]["type"] for f in sensitive["features"]}
    assert kinds == {"Point", "Polygon"}  # circles and polygons both exercised
    for f in sensitive["features"]:
        p = f["properties"]
        assert p["kind"] == "sensitive" and p["name"]
        assert (f["geometry"]["type"] == "Point") == ("radius_m" in p)
    regions = orjson.loads((world_dir / "zones/regions.geojson").read_bytes())
    nj, zj = (shape(f["geometry"]) for f in regions["features"])
    assert nj.is_valid and zj.is_valid and nj.touches(zj)  # the shared border
    assert nj.contains(Point(118.7969, 32.0603))  # Nanjing's centre
    assert zj.contains(Point(119.4250, 32.1875))  # Zhenjiang's centre
    depots = orjson.loads((world_dir / "zones/depots.geojson").read_bytes())
    for f in depots["features"]:
        assert f["properties"]["kind"] == "depot" and f["properties"]["radius_m"] > 0
        assert nj.union(zj).contains(shape(f["geometry"]))


def test_devices_csv_is_private_and_complete(world_dir: Path, clean: Dataset) -> None:
    path = world_dir / "devices.csv"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = list(csv.DictReader(path.open()))
    assert [r["device_id"] for r in rows] == [v.device_id for v in clean.world.vehicles]
    assert [(r["org"], r["depot"]) for r in rows] == [(v.org, v.unit.depot_id) for v in clean.world.vehicles]
    assert all(r["password"] == device_password(7, r["device_id"]) and len(r["password"]) >= 20 for r in rows)
    assert len({r["password"] for r in rows}) == len(rows)


def test_sensitive_places_and_depots_do_not_overlap() -> None:
    world = build_world(1, nanjing=40, zhenjiang=10)
    for u in world.units:
        for p in world.geo.places:
            assert not p.shape().buffer(0.005).contains(Point(u.depot_lon, u.depot_lat)), (
                u.org_id,
                p.zone_id,
            )


def test_road_grid_keeps_inside_its_city() -> None:
    world = build_world(1, nanjing=1)
    g = world.geo.graph
    for i, (lat, lon) in enumerate(g.nodes):
        city = g.city_of[i]
        if city:
            poly = world.geo.city(city).polygon
            assert distance_outside_m(poly, lat, lon) == 0
    assert GRID_MARGIN_M >= 1000


def test_namespace_separates_device_ids() -> None:
    a = build_world(1, nanjing=3, namespace="T1")
    b = build_world(1, nanjing=3)
    assert all(v.device_id.startswith("T1") for v in a.vehicles)
    assert not {v.device_id for v in a.vehicles} & {v.device_id for v in b.vehicles}
