"""The simulated organisation: org tree, vehicles with terminals and depots; writes the world files."""

from __future__ import annotations

import csv
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from fleetwatch.settings import ORG_DEFAULTS
from simulator._geography import CATEGORIES, Geography, build_geography

DEPOT_RADIUS_M = 150.0
# the province states its office hours (the detection defaults) explicitly in rules.yaml
_OFFICE_HOURS = {"start": f"{ORG_DEFAULTS.office_start:%H:%M}", "end": f"{ORG_DEFAULTS.office_end:%H:%M}"}

UNIT_NAMES: dict[str, tuple[str, ...]] = {
    "js.nj": (
        "南京市机关事务管理局", "南京市公安局", "南京市教育局", "南京市交通运输局",
        "南京市卫生健康委员会", "南京市生态环境局", "南京市水务局", "南京市城市管理局",
        "南京市市场监督管理局", "南京市应急管理局",
    ),
    "js.zj": ("镇江市机关事务管理局", "镇江市公安局", "镇江市交通运输局", "镇江市水利局"),
}  # fmt: skip


@dataclass(frozen=True)
class Unit:
    org_id: str
    name: str
    city: str
    depot_id: str
    depot_node: int
    depot_lat: float
    depot_lon: float


@dataclass(frozen=True)
class Vehicle:
    index: int
    vehicle_id: str
    device_id: str
    password: str
    unit: Unit

    @property
    def org(self) -> str:
        return self.unit.org_id

    @property
    def city(self) -> str:
        return self.unit.city


@dataclass
class World:
    seed: int
    geo: Geography
    units: list[Unit]
    vehicles: list[Vehicle]

    def units_of(self, city: str) -> list[Unit]:
        return [u for u in self.units if u.city == city]


def device_password(seed: int, device_id: str) -> str:
    """Derived from the seed so a world can be regenerated (and its accounts re-registered)."""
    return hashlib.sha256(f"fleetwatch-sim:{seed}:{device_id}".encode()).hexdigest()[:24]


def build_world(seed: int, nanjing: int, zhenjiang: int = 0, namespace: str = "") -> World:
    """A world with the given number of vehicles per city, spread round-robin over the units.

    ``namespace`` prefixes device ids (and shifts plate numbers) so that test runs against a
    shared broker never collide with each other's devices.
    """
    if nanjing < 0 or zhenjiang < 0:
        raise ValueError("vehicle counts must not be negative")
    geo = build_geography(seed)
    rng = random.Random(f"world:{seed}")
    units: list[Unit] = []
    for city in geo.cities:
        taken: set[int] = set()
        for k, name in enumerate(UNIT_NAMES[city.org_id], start=1):
            node = rng.choice([n for n in geo.destinations[city.org_id] if n not in taken])
            taken.add(node)
            org_id = f"{city.org_id}.u{k:02d}"
            lat, lon = geo.graph.nodes[node]
            units.append(Unit(org_id, name, city.org_id, f"depot-{org_id}", node, lat, lon))
    plate_base = 10000
    if namespace:
        plate_base += int(hashlib.sha256(namespace.encode()).hexdigest(), 16) % 8 * 10000
    vehicles: list[Vehicle] = []
    for city_id, count in (("js.nj", nanjing), ("js.zj", zhenjiang)):
        cobj = geo.city(city_id)
        city_units = [u for u in units if u.city == city_id]
        for i in range(count):
            device_id = f"{namespace}{cobj.device_prefix}{i + 1:05d}"
            vehicles.append(
                Vehicle(
                    index=len(vehicles),
                    vehicle_id=f"{cobj.plate_prefix}{plate_base + i}",
                    device_id=device_id,
                    password=device_password(seed, device_id),
                    unit=city_units[i % len(city_units)],
                )
            )
    return World(seed, geo, units, vehicles)


# --------------------------------------------------------------------------------------------
# world files (docs/world-format.md)
# --------------------------------------------------------------------------------------------


def _feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _collection(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "datum": "WGS-84", "features": features}


def _ring(points: list[tuple[float, float]]) -> list[list[float]]:
    """(lon, lat) points -> a closed GeoJSON ring."""
    ring = [[lon, lat] for lon, lat in points]
    return [*ring, ring[0]]


def rules_document(world: World) -> dict[str, Any]:
    orgs: list[dict[str, Any]] = [
        {"id": "js", "name": "江苏省", "settings": {"office_hours": _OFFICE_HOURS}}
    ]
    for city in world.geo.cities:
        orgs.append(
            {
                "id": city.org_id,
                "name": city.name,
                "parent": "js",
                "settings": {"permitted_region": city.region_id, "sensitive_categories": list(CATEGORIES)},
            }
        )
    for unit in world.units:
        orgs.append({"id": unit.org_id, "name": unit.name, "parent": unit.city})
    return {
        "version": 1,
        "timezone": "Asia/Shanghai",
        "zone_files": ["zones/regions.geojson", "zones/sensitive.geojson", "zones/depots.geojson"],
        "orgs": orgs,
        "vehicles": [
            {"vehicle_id": v.vehicle_id, "device_id": v.device_id, "org": v.org, "depot": v.unit.depot_id}
            for v in world.vehicles
        ],
    }


def zone_documents(world: World) -> dict[str, dict[str, Any]]:
    regions = [
        _feature(
            {"type": "Polygon", "coordinates": [_ring(list(c.outline))]},
            id=c.region_id,
            name=c.region_name,
            kind="region",
            source="hand-drawn simplification of the administrative outline, approximate (±3 km)",
        )
        for c in world.geo.cities
    ]
    sensitive = []
    geom: dict[str, Any]
    for p in world.geo.places:
        if p.polygon:
            geom = {"type": "Polygon", "coordinates": [_ring([(lon, lat) for lat, lon in p.corners()])]}
            sensitive.append(_feature(geom, id=p.zone_id, name=p.name, kind="sensitive", category=p.category))
        else:
            geom = {"type": "Point", "coordinates": [p.lon, p.lat]}
            sensitive.append(
                _feature(
                    geom,
                    id=p.zone_id,
                    name=p.name,
                    kind="sensitive",
                    category=p.category,
                    radius_m=p.radius_m,
                )
            )
    depots = [
        _feature(
            {"type": "Point", "coordinates": [u.depot_lon, u.depot_lat]},
            id=u.depot_id,
            name=f"{u.name}车库",
            kind="depot",
            radius_m=DEPOT_RADIUS_M,
        )
        for u in world.units
    ]
    return {
        "regions.geojson": _collection(regions),
        "sensitive.geojson": _collection(sensitive),
        "depots.geojson": _collection(depots),
    }


def write_devices_csv(world: World, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as fh:
        os.chmod(path, 0o600)
        writer = csv.writer(fh, lineterminator="\n")
        # The format of `fleetwatch devices add` (after `db import-registry rules.yaml` for the orgs).
        writer.writerow(["device_id", "vehicle_id", "org", "depot", "password"])
        for v in world.vehicles:
            writer.writerow([v.device_id, v.vehicle_id, v.org, v.unit.depot_id, v.password])


def write_world(world: World, out: Path) -> None:
    """rules.yaml, zones/*.geojson and devices.csv (the static part of a world directory)."""
    (out / "zones").mkdir(parents=True, exist_ok=True)
    (out / "rules.yaml").write_text(
        yaml.safe_dump(rules_document(world), allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    for name, doc in zone_documents(world).items():
        (out / "zones" / name).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    write_devices_csv(world, out / "devices.csv")
