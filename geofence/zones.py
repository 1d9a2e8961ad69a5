"""Zones loaded from GeoJSON (datum-aware, validated) with metre-based containment and distance."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.prepared import PreparedGeometry, prep

from geofence.datum import Datum, gcj02_to_wgs84, parse_datum
from geofence.projection import LocalFrame

ZONE_KINDS = ("region", "sensitive", "depot", "route")
SENSITIVE_CATEGORIES = ("golf", "ktv", "scenic", "resort", "restaurant", "residential")

# Mainland China's box (lat 3..54 N, lon 73..136 E): used to recognise (lat, lon) written as
# (lon, lat), since every supervised zone lies in China.
_CHINA_LAT = (3.0, 54.0)
_CHINA_LON = (73.0, 136.0)
_CIRCLE_QUAD_SEGS = 16  # 64-gon: the radius is undershot by at most 0.12 %


class ZoneError(ValueError):
    """A zone file or feature that cannot be used: which file, which feature, what is wrong."""

    def __init__(self, source: str, feature: str | None, reason: str) -> None:
        self.source = source
        self.feature = feature
        self.reason = reason
        where = f"{source}: feature {feature}" if feature else source
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone in WGS-84 plus its metric twin in a local frame centred on the zone."""

    id: str
    name: str
    kind: str
    geometry: BaseGeometry  # WGS-84 lon/lat, always areal (Polygon or MultiPolygon)
    category: str | None = None
    source: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    frame: LocalFrame = field(default=LocalFrame(0.0, 0.0))
    metric: BaseGeometry = field(default=Polygon())
    _prepared: PreparedGeometry | None = None

    def contains(self, lat: float, lon: float) -> bool:
        """Inside or on the boundary."""
        point = Point(lon, lat)
        if self._prepared is not None:
            return bool(self._prepared.intersects(point))
        return bool(self.geometry.intersects(point))

    def distance_m(self, lat: float, lon: float) -> float:
        """Metres from the point to the zone (0 inside or on the boundary)."""
        x, y = self.frame.to_xy(lat, lon)
        return float(self.metric.distance(Point(x, y)))

    def boundary_distance_m(self, lat: float, lon: float) -> float:
        """Metres from the point to the zone's boundary, whichever side it is on."""
        x, y = self.frame.to_xy(lat, lon)
        return float(self.metric.boundary.distance(Point(x, y)))


def make_zone(
    zone_id: str,
    kind: str,
    geometry: BaseGeometry,
    *,
    name: str = "",
    category: str | None = None,
    source: str = "",
    properties: dict[str, Any] | None = None,
) -> Zone:
    """Build a zone from an areal WGS-84 geometry (already validated)."""
    centre = geometry.centroid
    frame = LocalFrame(centre.y, centre.x)
    return Zone(
        id=zone_id,
        name=name or zone_id,
        kind=kind,
        geometry=geometry,
        category=category,
        source=source,
        properties=dict(properties or {}),
        frame=frame,
        metric=frame.project(geometry),
        _prepared=prep(geometry),
    )


def circle_zone(zone_id: str, lat: float, lon: float, radius_m: float, **kw: Any) -> Zone:
    """A circle of `radius_m` metres around (lat, lon), built in the local frame of its centre."""
    frame = LocalFrame(lat, lon)
    disc = Point(0.0, 0.0).buffer(radius_m, quad_segs=_CIRCLE_QUAD_SEGS)
    return make_zone(zone_id, kw.pop("kind", "sensitive"), frame.unproject(disc), **kw)


def load_zone_file(path: str | Path, *, display_name: str | None = None) -> list[Zone]:
    """Read and validate one GeoJSON FeatureCollection; GCJ-02 coordinates become WGS-84."""
    path = Path(path)
    source = display_name or str(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ZoneError(source, None, "file not found") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ZoneError(source, None, f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        bad = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        raise ZoneError(source, None, f"not UTF-8 text: {bad}") from None
    except RecursionError:
        raise ZoneError(source, None, "nested too deeply to be GeoJSON") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more digits than Python converts
        raise ZoneError(source, None, f"not valid JSON: {exc}") from None
    return parse_zone_collection(doc, source)


def parse_zone_collection(doc: Any, source: str) -> list[Zone]:
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise ZoneError(source, None, "expected a GeoJSON FeatureCollection")
    try:
        datum = parse_datum(doc.get("datum"))
    except ValueError as exc:
        raise ZoneError(source, None, str(exc)) from None
    features = doc.get("features")
    if not isinstance(features, list):
        raise ZoneError(source, None, "'features' must be a list")
    zones: list[Zone] = []
    seen: set[str] = set()
    for index, feature in enumerate(features):
        zone = _parse_feature(feature, index, datum, source)
        if zone.id in seen:
            raise ZoneError(source, zone.id, "duplicate zone id")
        seen.add(zone.id)
        zones.append(zone)
    return zones


def _parse_feature(feature: Any, index: int, datum: Datum, source: str) -> Zone:
    label = f"#{index}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ZoneError(source, label, "expected a GeoJSON Feature")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise ZoneError(source, label, "missing 'properties'")
    zone_id = props.get("id", feature.get("id"))
    if not isinstance(zone_id, str) or not zone_id.strip():
        raise ZoneError(source, label, "missing or empty 'id' property")
    label = f"{zone_id!r}"
    kind = props.get("kind")
    if kind not in ZONE_KINDS:
        raise ZoneError(source, label, f"'kind' must be one of {', '.join(ZONE_KINDS)} (got {kind!r})")
    category = props.get("category")
    if kind == "sensitive" and category not in SENSITIVE_CATEGORIES:
        raise ZoneError(
            source, label, f"'category' must be one of {', '.join(SENSITIVE_CATEGORIES)} (got {category!r})"
        )
    raw_geom = feature.get("geometry")
    if not isinstance(raw_geom, dict) or "type" not in raw_geom:
        raise ZoneError(source, label, "missing geometry")
    geometry = _geometry(raw_geom, props, datum, source, label)
    return make_zone(
        zone_id,
        kind,
        geometry,
        name=str(props.get("name") or zone_id),
        category=category if isinstance(category, str) else None,
        source=source,
        properties=props,
    )


def _geometry(
    raw: dict[str, Any], props: dict[str, Any], datum: Datum, source: str, label: str
) -> BaseGeometry:
    gtype = raw.get("type")
    coords = raw.get("coordinates")
    if gtype not in ("Polygon", "MultiPolygon", "Point", "LineString"):
        raise ZoneError(source, label, f"unsupported geometry type {gtype!r}")
    if not coords:
        raise ZoneError(source, label, f"empty {gtype} geometry")
    positions = list(_positions(coords))
    if not positions:
        raise ZoneError(source, label, f"empty {gtype} geometry")
    for pos in positions:
        if len(pos) < 2 or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in pos[:2]):
            raise ZoneError(source, label, f"bad coordinate {pos!r}: expected [lon, lat] numbers")
    _check_lon_lat_order(positions, source, label)
    if gtype in ("Polygon", "MultiPolygon"):
        _check_rings(gtype, coords, source, label)
    try:
        geom = shape(raw)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise ZoneError(source, label, f"malformed {gtype}: {exc}") from None
    if geom.is_empty:
        raise ZoneError(source, label, f"empty {gtype} geometry")
    if datum is Datum.GCJ02:
        geom = shapely.transform(geom, _gcj_to_wgs_array)
    if isinstance(geom, Polygon | MultiPolygon):
        if not geom.is_valid:
            raise ZoneError(source, label, f"invalid polygon: {shapely.is_valid_reason(geom)}")
        return geom
    if isinstance(geom, Point):
        radius = _positive(props, "radius_m", source, label, "a Point zone is a circle and needs radius_m")
        frame = LocalFrame(geom.y, geom.x)
        disc = Point(0.0, 0.0).buffer(radius, quad_segs=_CIRCLE_QUAD_SEGS)
        return frame.unproject(disc)
    if isinstance(geom, LineString):
        if geom.length == 0:
            raise ZoneError(source, label, "route LineString has zero length")
        buffer_m = _positive(
            props, "buffer_m", source, label, "a LineString zone is a route and needs buffer_m"
        )
        centre = geom.centroid
        frame = LocalFrame(centre.y, centre.x)
        return frame.unproject(frame.project(geom).buffer(buffer_m, quad_segs=8))
    raise ZoneError(source, label, f"unsupported geometry {geom.geom_type}")


def _positions(coords: Any) -> Iterable[Sequence[Any]]:
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], int | float):
        yield coords
        return
    if isinstance(coords, list | tuple):
        for item in coords:
            yield from _positions(item)


def _in_china(lat: float, lon: float) -> bool:
    return _CHINA_LAT[0] <= lat <= _CHINA_LAT[1] and _CHINA_LON[0] <= lon <= _CHINA_LON[1]


def _check_lon_lat_order(positions: list[Sequence[Any]], source: str, label: str) -> None:
    for pos in positions:
        lon, lat = float(pos[0]), float(pos[1])
        if not -90 <= lat <= 90 or not -180 <= lon <= 180:
            if -90 <= lon <= 90 and _in_china(lon, lat):
                raise ZoneError(
                    source, label, f"coordinates look like (lat, lon): {list(pos[:2])}; GeoJSON is [lon, lat]"
                )
            raise ZoneError(
                source, label, f"coordinate {list(pos[:2])} is outside lon -180..180 / lat -90..90"
            )
    swapped = sum(
        1
        for p in positions
        if _in_china(float(p[0]), float(p[1])) and not _in_china(float(p[1]), float(p[0]))
    )
    if swapped == len(positions):
        first = list(positions[0][:2])
        raise ZoneError(
            source, label, f"coordinates look like (lat, lon), e.g. {first}; GeoJSON is [lon, lat]"
        )


def _check_rings(gtype: str, coords: Any, source: str, label: str) -> None:
    polygons = [coords] if gtype == "Polygon" else coords
    for p_index, rings in enumerate(polygons):
        if not isinstance(rings, list) or not rings:
            raise ZoneError(source, label, f"polygon {p_index} has no rings")
        for r_index, ring in enumerate(rings):
            where = f"polygon {p_index} ring {r_index}" if gtype == "MultiPolygon" else f"ring {r_index}"
            if not isinstance(ring, list) or len(ring) < 4:
                raise ZoneError(source, label, f"{where} needs at least 4 positions (a closed triangle)")
            if not all(isinstance(pos, list) and len(pos) >= 2 for pos in ring):
                raise ZoneError(source, label, f"{where}: every position must be a [lon, lat] list")
            if list(ring[0][:2]) != list(ring[-1][:2]):
                raise ZoneError(source, label, f"{where} is not closed (first position != last)")


def _positive(props: dict[str, Any], key: str, source: str, label: str, why: str) -> float:
    value = props.get(key)
    if value is None:
        raise ZoneError(source, label, why)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ZoneError(source, label, f"{key} must be a positive number of metres (got {value!r})")
    return float(value)


def _gcj_to_wgs_array(coords: Any) -> Any:
    out = coords.copy()
    for i in range(len(coords)):
        lat, lon = gcj02_to_wgs84(float(coords[i, 1]), float(coords[i, 0]))
        out[i, 0], out[i, 1] = lon, lat
    return out
