"""A Friday-night KTV visit in the database: fixes, two trips, alerts, orders; plus its rules.yaml world."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb

from fleetwatch.records import alert_id_for
from fleetwatch.settings import Settings
from store.db import connect

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = (32.0600, 118.7960)
KTV = (32.0418, 118.7845)  # WGS-84
ARRIVE = datetime(2026, 11, 27, 21, 5, tzinfo=SHANGHAI)  # a Friday
LEAVE = datetime(2026, 11, 27, 22, 50, tzinfo=SHANGHAI)
DEPART = datetime(2026, 11, 27, 20, 40, tzinfo=SHANGHAI)
BACK = datetime(2026, 11, 27, 23, 10, tzinfo=SHANGHAI)


@dataclass
class Scene:
    vehicle: str
    bystander: str
    org: str
    fixes: int
    ktv_alert: str
    night_alert: str


def _leg(start: datetime, end: datetime, a: tuple[float, float], b: tuple[float, float], bend_deg: float):  # type: ignore[no-untyped-def]
    steps = int((end - start).total_seconds() // 30)
    for i in range(steps + 1):
        f = i / steps
        # A gentle bend so the drawn track is not a straight line.
        bend = bend_deg * math.sin(math.pi * f)
        yield (
            start + timedelta(seconds=30 * i),
            a[0] + (b[0] - a[0]) * f + bend,
            a[1] + (b[1] - a[1]) * f,
            38.0,
        )


def insert_scene(settings: Settings, unique: str) -> Scene:
    vehicle, bystander = f"苏A{unique[:5]}", f"苏A{unique[5:10]}"
    org = f"t{unique}.unit"
    rows = []
    for ts, lat, lon, speed in [*_leg(DEPART, ARRIVE, OFFICE, KTV, 0.002)]:
        rows.append((ts, lat, lon, speed, True))
    parked = ARRIVE
    while parked < LEAVE:
        parked += timedelta(seconds=60)
        rows.append((parked, KTV[0] + 0.00002, KTV[1] - 0.00001, 0.0, False))
    for ts, lat, lon, speed in _leg(LEAVE + timedelta(seconds=30), BACK, KTV, OFFICE, 0.003):
        rows.append((ts, lat, lon, speed, True))
    ktv_alert = alert_id_for("private_destination", vehicle, ARRIVE + timedelta(minutes=1))
    night_alert = alert_id_for("off_hours", vehicle, DEPART)
    with connect(settings) as conn:
        conn.execute(
            "INSERT INTO orgs (org_id, name) VALUES (%s, 'city') ON CONFLICT DO NOTHING", (f"t{unique}",)
        )
        conn.execute(
            "INSERT INTO orgs (org_id, name, parent_id) VALUES (%s, 'unit', %s) ON CONFLICT DO NOTHING",
            (org, f"t{unique}"),
        )
        conn.execute(
            "INSERT INTO vehicles (vehicle_id, org) VALUES (%s, %s), (%s, %s)", (vehicle, org, bystander, org)
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO positions (ts, vehicle_id, device_id, org, seq, lat, lon, speed_kmh, heading,"
                " ignition,"
                " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 90, %s, %s)",
                [
                    (ts, vehicle, f"d{unique}", org, i, lat, lon, speed, ign, ts)
                    for i, (ts, lat, lon, speed, ign) in enumerate(rows)
                ],
            )
            # Another official car drives past the KTV at 21:30 without stopping, 120 m away.
            cur.executemany(
                "INSERT INTO positions (ts, vehicle_id, device_id, org, seq, lat, lon, speed_kmh, heading,"
                " ignition,"
                " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 40, 0, true, %s)",
                [
                    (
                        ARRIVE + timedelta(minutes=25, seconds=10 * i),
                        bystander,
                        f"e{unique}",
                        org,
                        i,
                        KTV[0] - 0.004 + 0.0004 * i,
                        KTV[1] + 0.00127,
                        ARRIVE,
                    )
                    for i in range(20)
                ],
            )
        for trip_id, start, end, a, b in (
            ("trip-out", DEPART, ARRIVE, OFFICE, KTV),
            ("trip-back", LEAVE, BACK, KTV, OFFICE),
        ):
            conn.execute(
                "INSERT INTO trips (trip_id, vehicle_id, org, start_at, end_at, start_lat, start_lon,"
                " end_lat,"
                " end_lon, distance_m, max_speed_kmh, fix_count, revision) VALUES"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, 3100, 52, 50, 1)",
                (f"{trip_id}-{unique}", vehicle, org, start, end, a[0], a[1], b[0], b[1]),
            )
        for alert_id, type_, severity, start, end, pos in (
            (night_alert, "off_hours", "yellow", DEPART, ARRIVE, OFFICE),
            (ktv_alert, "private_destination", "red", ARRIVE + timedelta(minutes=1), LEAVE, KTV),
        ):
            conn.execute(
                "INSERT INTO alerts (alert_id, type, severity, vehicle_id, org, start_at, end_at, lat, lon,"
                " raised_at, due_at, details, revision)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1)",
                (
                    alert_id,
                    type_,
                    severity,
                    vehicle,
                    org,
                    start,
                    end,
                    pos[0],
                    pos[1],
                    start + timedelta(minutes=10),
                    start + timedelta(days=3, minutes=10),
                    Jsonb({"zone": "ktv-1"} if type_ != "off_hours" else {}),
                ),
            )
        conn.execute(
            "INSERT INTO orders (order_id, vehicle_id, org, start_at, end_at, purpose, destination, status,"
            " revision)"
            " VALUES (%s, %s, %s, %s, %s, '接待', '市会议中心', 'cancelled', 1)",
            (f"o-{unique}", vehicle, org, DEPART - timedelta(minutes=30), BACK - timedelta(hours=1)),
        )
    return Scene(vehicle, bystander, org, len(rows), ktv_alert, night_alert)


def write_rules(directory: Path, scene: Scene) -> Path:
    """Region whose northern edge runs between the office and the KTV; the KTV as a sensitive zone."""
    region = [[118.60, 31.90], [119.00, 31.90], [119.00, 32.052], [118.60, 32.052], [118.60, 31.90]]
    zones = {"type": "FeatureCollection", "datum": "WGS-84", "features": [
        {"type": "Feature", "properties": {"id": "region-t", "kind": "region", "name": "permitted region"},
         "geometry": {"type": "Polygon", "coordinates": [region]}},
        {"type": "Feature",
         "properties": {"id": "ktv-1", "kind": "sensitive", "category": "ktv", "name": "KTV", "radius_m": 80},
         "geometry": {"type": "Point", "coordinates": [KTV[1], KTV[0]]}},
    ]}  # fmt: skip
    (directory / "zones.geojson").write_text(json.dumps(zones), encoding="utf-8")
    city, unit = scene.org.split(".", 1)[0], scene.org
    rules = f"""
version: 1
timezone: Asia/Shanghai
zone_files: [zones.geojson]
orgs:
  - id: {city}
    name: city
    settings:
      permitted_region: region-t
  - id: {unit}
    parent: {city}
vehicles:
  - vehicle_id: {scene.vehicle}
    device_id: d{scene.vehicle[-5:]}
    org: {unit}
"""
    path = directory / "rules.yaml"
    path.write_text(rules, encoding="utf-8")
    return path
