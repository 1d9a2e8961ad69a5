"""A tiny hand-made world for detector tests: one region, a golf club, a depot, one vehicle."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetwatch.records import DispatchOrder, Fix, OrderStatus, parse_fix
from geofence import Rules, load_rules
from streams.core import Context, OrderBook

VEHICLE = "苏A10001"
DEVICE = "NJ0001"
# Region: a box lat 31.90..32.20, lon 118.60..119.00 (about 28 x 33 km).
REGION = [[118.60, 31.90], [119.00, 31.90], [119.00, 32.20], [118.60, 32.20], [118.60, 31.90]]
GOLF = (32.10, 118.90)  # centre, radius 300 m
DEPOT = (32.00, 118.70)  # centre, radius 200 m

RULES = """
version: 1
timezone: Asia/Shanghai
zone_files: [zones.geojson]
orgs:
  - id: js
    name: 江苏省
  - id: js.nj
    parent: js
    settings:
      permitted_region: region-nj
  - id: js.nj.u01
    parent: js.nj
vehicles:
  - vehicle_id: 苏A10001
    device_id: NJ0001
    org: js.nj.u01
    depot: depot-u01
"""


def write_world(directory: Path, rules_text: str = RULES) -> Path:
    zones = {
        "type": "FeatureCollection",
        "datum": "WGS-84",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": "region-nj", "kind": "region", "name": "南京"},
                "geometry": {"type": "Polygon", "coordinates": [REGION]},
            },
            {
                "type": "Feature",
                "properties": {"id": "golf-1", "kind": "sensitive", "category": "golf", "radius_m": 300},
                "geometry": {"type": "Point", "coordinates": [GOLF[1], GOLF[0]]},
            },
            {
                "type": "Feature",
                "properties": {"id": "depot-u01", "kind": "depot", "radius_m": 200},
                "geometry": {"type": "Point", "coordinates": [DEPOT[1], DEPOT[0]]},
            },
        ],
    }
    (directory / "zones.geojson").write_text(json.dumps(zones), encoding="utf-8")
    path = directory / "rules.yaml"
    path.write_text(rules_text, encoding="utf-8")
    return path


def load_world(directory: Path) -> Rules:
    return load_rules(write_world(directory))


def context(rules: Rules, orders: list[DispatchOrder] | None = None) -> Context:
    return Context(rules, OrderBook.of(orders or []))


_seq = itertools.count(1)


def ts(text: str) -> datetime:
    """'2026-03-07 10:00:00' in Asia/Shanghai."""
    return datetime.fromisoformat(text + "+08:00")


def fix(
    when: str,
    lat: float,
    lon: float,
    speed: float = 40.0,
    acc: bool = True,
    *,
    seq: int | None = None,
    alarm: int | None = None,
    valid: bool | None = None,
) -> Fix:
    raw: dict[str, Any] = {
        "v": 1,
        "device_id": DEVICE,
        "vehicle_id": VEHICLE,
        "ts": ts(when).isoformat(),
        "lat": lat,
        "lon": lon,
        "speed_kmh": speed,
        "heading": 90,
        "acc": acc,
        "seq": seq if seq is not None else next(_seq),
    }
    if alarm is not None:
        raw["alarm"] = alarm
    if valid is not None:
        raw["fix_valid"] = valid
    return parse_fix(raw, now=datetime(2100, 1, 1).astimezone())


def order(
    order_id: str,
    start: str,
    end: str,
    area: dict[str, Any] | None = None,
    status: OrderStatus = OrderStatus.APPROVED,
) -> DispatchOrder:
    return DispatchOrder(
        order_id=order_id,
        vehicle_id=VEHICLE,
        org="js.nj.u01",
        start=ts(start),
        end=ts(end),
        purpose="公务",
        destination="somewhere",
        status=status,
        destination_area=area,
    )


def square(lat: float, lon: float, half_deg: float = 0.02) -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [
            [
                [lon - half_deg, lat - half_deg],
                [lon + half_deg, lat - half_deg],
                [lon + half_deg, lat + half_deg],
                [lon - half_deg, lat + half_deg],
                [lon - half_deg, lat - half_deg],
            ]
        ],
    }
