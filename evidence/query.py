"""What the database knows around a time window: by plate, or every vehicle near a place."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]
EARTH_RADIUS_M = 6_371_008.8
#: Stationary below this speed (km/h) or with the ignition off (DESIGN §4).
STOP_SPEED_KMH = 3.0
#: Stops shown in a report: at least this long (a stop this long ends a trip, DESIGN §4).
STOP_MIN_SECONDS = 300.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine on the mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class Point:
    ts: datetime
    lat: float
    lon: float
    speed_kmh: float
    ignition: bool


@dataclass(frozen=True, slots=True)
class Stop:
    start: datetime
    end: datetime
    lat: float
    lon: float

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass
class VehicleEvidence:
    vehicle_id: str
    org: str
    track: list[Point]
    trips: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    #: Closest approach to the place asked about (near queries), metres.
    closest_m: float | None = None

    @property
    def stops(self) -> list[Stop]:
        return find_stops(self.track)


def find_stops(track: list[Point], min_seconds: float = STOP_MIN_SECONDS) -> list[Stop]:
    """Runs of stationary fixes lasting at least ``min_seconds``."""
    stops: list[Stop] = []
    run: list[Point] = []
    for point in [*track, None]:
        if point is not None and (point.speed_kmh < STOP_SPEED_KMH or not point.ignition):
            run.append(point)
            continue
        if run and (run[-1].ts - run[0].ts).total_seconds() >= min_seconds:
            lat = sum(p.lat for p in run) / len(run)
            lon = sum(p.lon for p in run) / len(run)
            stops.append(Stop(run[0].ts, run[-1].ts, lat, lon))
        run = []
    return stops


def _dicts(cursor: psycopg.Cursor[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = [d.name for d in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def vehicle_evidence(conn: Conn, vehicle_id: str, start: datetime, end: datetime) -> VehicleEvidence:
    rows = conn.execute(
        "SELECT ts, lat, lon, speed_kmh, ignition, org FROM positions WHERE vehicle_id = %s"
        " AND ts BETWEEN %s AND %s ORDER BY ts",
        (vehicle_id, start, end),
    ).fetchall()
    track = [Point(r[0], float(r[1]), float(r[2]), float(r[3]), bool(r[4])) for r in rows]
    org_row = conn.execute("SELECT org FROM vehicles WHERE vehicle_id = %s", (vehicle_id,)).fetchone()
    org = str(org_row[0]) if org_row else (str(rows[-1][5]) if rows else "unregistered")
    overlap = (vehicle_id, end, start)
    trips = _dicts(
        conn.execute(
            "SELECT trip_id, start_at, end_at, distance_m, max_speed_kmh, fix_count, order_id, retracted"
            " FROM trips WHERE vehicle_id = %s AND start_at <= %s AND end_at >= %s ORDER BY start_at",
            overlap,
        )
    )
    alerts = _dicts(
        conn.execute(
            "SELECT alert_id, type, severity, status, start_at, end_at, lat, lon, raised_at, due_at, details,"
            " retract_reason FROM alerts WHERE vehicle_id = %s AND start_at <= %s"
            " AND coalesce(end_at, start_at) >= %s ORDER BY start_at",
            overlap,
        )
    )
    orders = _dicts(
        conn.execute(
            "SELECT order_id, start_at, end_at, purpose, destination, status FROM orders"
            " WHERE vehicle_id = %s AND start_at <= %s AND end_at >= %s ORDER BY start_at",
            overlap,
        )
    )
    return VehicleEvidence(vehicle_id, org, track, trips, alerts, orders)


def vehicles_near(
    conn: Conn, lat: float, lon: float, radius_m: float, start: datetime, end: datetime
) -> list[tuple[str, float]]:
    """(vehicle, closest approach in metres) of vehicles with a fix within ``radius_m``, closest first."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M) * 1.01
    dlon = dlat / max(0.01, math.cos(math.radians(lat)))
    rows = conn.execute(
        "SELECT vehicle_id, lat, lon FROM positions WHERE ts BETWEEN %s AND %s"
        " AND lat BETWEEN %s AND %s AND lon BETWEEN %s AND %s",
        (start, end, lat - dlat, lat + dlat, lon - dlon, lon + dlon),
    ).fetchall()
    closest: dict[str, float] = {}
    for vehicle_id, plat, plon in rows:
        d = distance_m(lat, lon, float(plat), float(plon))
        if d <= radius_m and d < closest.get(vehicle_id, math.inf):
            closest[str(vehicle_id)] = d
    return sorted(closest.items(), key=lambda kv: kv[1])
