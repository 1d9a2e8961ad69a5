"""Gather a report's data (by plate or near a place), with the rules' zones if given, and write the bundle."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from evidence.query import Conn, VehicleEvidence, vehicle_evidence, vehicles_near
from evidence.report import Bundle, MapZone, Place, Request, write_bundle
from geofence import Datum, Rules, gcj02_to_wgs84
from geofence.datum import parse_datum
from store import audit


class EvidenceError(ValueError):
    """A request that cannot be answered as asked (which option, which value, why)."""


def parse_local_time(value: str, option: str, timezone: str) -> datetime:
    """RFC 3339 / ISO 8601; without an offset it is local time in ``timezone``."""
    try:
        ts = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        raise EvidenceError(
            f"{option}: {value!r} is not a time like 2026-11-27T21:30 or 2026-11-27T21:30+08:00"
        ) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=ZoneInfo(timezone))


def parse_place(value: str, datum: str, option: str = "--place") -> tuple[float, float]:
    """``LAT,LON`` in ``datum`` -> WGS-84 (GCJ-02 is converted with the geofence datum code)."""
    match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*", value)
    if not match:
        raise EvidenceError(f"{option}: {value!r} is not LAT,LON in decimal degrees (e.g. 32.0418,118.7845)")
    lat, lon = float(match[1]), float(match[2])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise EvidenceError(f"{option}: {value!r} is out of range (latitude first, then longitude)")
    try:
        given = parse_datum(datum)
    except ValueError as exc:
        raise EvidenceError(f"--datum: {exc}") from None
    if given is Datum.GCJ02:
        return gcj02_to_wgs84(lat, lon)
    return lat, lon


def _zones(rules: Rules | None, vehicles: list[VehicleEvidence]) -> list[MapZone]:
    """The permitted region's edge of each vehicle and every zone its track entered."""
    if rules is None:
        return []
    zones: dict[str, MapZone] = {}
    for v in vehicles:
        region = rules.region_of(v.vehicle_id)
        if region is not None:
            zones[region.id] = MapZone(region.name, "region", region.geometry)
        for point in v.track:
            for zone in rules.zones.containing(point.lat, point.lon):
                if region is None or zone.id != region.id:
                    zones.setdefault(zone.id, MapZone(zone.name, zone.kind, zone.geometry))
    return list(zones.values())


def build_evidence(
    conn: Conn,
    *,
    out_dir: Path,
    start: datetime,
    end: datetime,
    timezone: str,
    generated_by: str,
    plate: str | None = None,
    near: tuple[float, float] | None = None,
    radius_m: float = 200.0,
    rules: Rules | None = None,
    title: str | None = None,
    now: datetime | None = None,
) -> tuple[Bundle, list[VehicleEvidence]]:
    if end <= start:
        raise EvidenceError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    if (plate is None) == (near is None) and plate is None:
        raise EvidenceError("give --plate or --near (or both: that vehicle near that place)")
    if radius_m <= 0:
        raise EvidenceError(f"--radius: {radius_m} must be positive (metres)")
    query: dict[str, object] = {"from": start.isoformat(), "to": end.isoformat()}
    place = None
    if near is not None:
        place = Place(near[0], near[1], radius_m, "place asked about")
        query.update(near_wgs84=f"{near[0]:.6f},{near[1]:.6f}", radius_m=radius_m)
        found = vehicles_near(conn, near[0], near[1], radius_m, start, end)
        if plate is not None:
            found = [(vid, d) for vid, d in found if vid == plate] or [(plate, float("nan"))]
    else:
        assert plate is not None
        found = [(plate, float("nan"))]
    if plate is not None:
        query["plate"] = plate
    vehicles = []
    for vehicle_id, closest in found:
        v = vehicle_evidence(conn, vehicle_id, start, end)
        v.closest_m = None if closest != closest else closest  # NaN: not a near query for this vehicle
        vehicles.append(v)
    generated_at = now or datetime.now(ZoneInfo(timezone))
    heading = title or (
        f"Evidence: {plate}" if plate else f"Evidence: official vehicles within {radius_m:g} m"
    )
    req = Request(
        heading, start, end, timezone, generated_by, generated_at, query, place, _zones(rules, vehicles)
    )
    bundle = write_bundle(out_dir, vehicles, req)
    # Who asked what and what it returned; the manifest's checksum ties the row to the files.
    audit.record(conn, actor=generated_by, action="evidence.report",
                 target=plate or f"near:{query['near_wgs84']}",
                 detail={**query, "vehicles": [v.vehicle_id for v in vehicles],
                         "directory": str(bundle.directory), "manifest_sha256": bundle.manifest_sha256})
    return bundle, vehicles
