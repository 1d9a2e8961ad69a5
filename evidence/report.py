"""The evidence bundle: a self-contained HTML report (map as inline SVG, timeline, tables), GeoJSON,
GPX and a manifest of SHA-256 checksums. No network: nothing is loaded from outside the file."""

from __future__ import annotations

import hashlib
import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from zoneinfo import ZoneInfo

from shapely.geometry.base import BaseGeometry

from evidence.query import Point, VehicleEvidence

DATUM_NOTE = (
    "All coordinates are WGS-84 (as the terminals report them; CGCS2000 ≈ WGS-84). "
    "They are NOT GCJ-02: on AMap / Tencent maps they appear ~500 m off."
)
SEVERITY_COLOUR = {"yellow": "#e0a800", "red": "#d93025"}
MAP_W, MAP_H, MARGIN = 860, 560, 30


@dataclass(frozen=True, slots=True)
class Place:
    lat: float
    lon: float
    radius_m: float | None = None
    label: str = "place"


@dataclass(frozen=True, slots=True)
class MapZone:
    name: str
    kind: str  # region (the permitted region's edge) or a zone kind (sensitive, depot, ...)
    geometry: BaseGeometry


@dataclass
class Request:
    title: str
    start: datetime
    end: datetime
    timezone: str
    generated_by: str
    generated_at: datetime
    query: dict[str, Any]
    place: Place | None = None
    zones: list[MapZone] = field(default_factory=list)


class Projection:
    """Local equirectangular metres around the data's centre, fitted into the SVG box (north up)."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        lats = [p[0] for p in points]
        lons = [p[1] for p in points]
        self.lat0 = (min(lats) + max(lats)) / 2
        self.lon0 = (min(lons) + max(lons)) / 2
        self.kx = 111_320.0 * math.cos(math.radians(self.lat0))
        self.ky = 110_574.0
        xs = [(lon - self.lon0) * self.kx for lon in lons]
        ys = [(lat - self.lat0) * self.ky for lat in lats]
        span = max(max(xs) - min(xs), max(ys) - min(ys), 200.0)
        self.scale = min(
            (MAP_W - 2 * MARGIN) / max(max(xs) - min(xs), span / 3),
            (MAP_H - 2 * MARGIN) / max(max(ys) - min(ys), span / 3),
        )
        self.cx = (max(xs) + min(xs)) / 2
        self.cy = (max(ys) + min(ys)) / 2

    def __call__(self, lat: float, lon: float) -> tuple[float, float]:
        x = ((lon - self.lon0) * self.kx - self.cx) * self.scale + MAP_W / 2
        y = MAP_H / 2 - ((lat - self.lat0) * self.ky - self.cy) * self.scale
        return round(x, 1), round(y, 1)

    def metres_per_px(self) -> float:
        return 1.0 / self.scale


def _path(proj: Projection, points: Iterable[tuple[float, float]]) -> str:
    coords = [proj(lat, lon) for lat, lon in points]
    return "M" + " L".join(f"{x},{y}" for x, y in coords) if coords else ""


def _rings(geometry: BaseGeometry) -> list[list[tuple[float, float]]]:
    polygons = getattr(geometry, "geoms", [geometry])
    rings = []
    for polygon in polygons:
        exterior = getattr(polygon, "exterior", None)
        if exterior is not None:
            rings.append([(lat, lon) for lon, lat in exterior.coords])
    return rings


def _local(ts: datetime | None, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if ts else "—"


def _in_span(point: Point, alert: dict[str, Any]) -> bool:
    return bool(alert["start_at"] <= point.ts <= (alert["end_at"] or alert["start_at"]))


def svg_map(v: VehicleEvidence, req: Request) -> str:
    extent = [(p.lat, p.lon) for p in v.track] + [(float(a["lat"]), float(a["lon"])) for a in v.alerts]
    if req.place:
        extent.append((req.place.lat, req.place.lon))
    if not extent:
        return "<p>No fixes in this window.</p>"
    proj = Projection(extent)
    parts = [svg_open("map", vehicle=v.vehicle_id), *svg_zones(proj, req.zones)]
    if req.place:
        x, y = proj(req.place.lat, req.place.lon)
        if req.place.radius_m:
            r = req.place.radius_m / proj.metres_per_px()
            parts.append(
                f'<circle class="place-radius" cx="{x}" cy="{y}" r="{r:.1f}" fill="none" '
                f'stroke="#5f6368" stroke-dasharray="4 3"/>'
            )
        parts.append(
            f'<path class="place" d="M{x - 7},{y - 7} L{x + 7},{y + 7} M{x - 7},{y + 7} L{x + 7},{y - 7}" '
            f'stroke="#202124" stroke-width="3"><title>{html.escape(req.place.label)}</title></path>'
        )
    if v.track:
        points = [(p.lat, p.lon) for p in v.track]
        parts.append(
            f'<path class="track" d="{_path(proj, points)}" fill="none" stroke="#1a73e8" '
            f'stroke-width="2" data-points="{len(points)}"/>'
        )
    for i, stop in enumerate(v.stops, 1):
        x, y = proj(stop.lat, stop.lon)
        parts.append(
            f'<g class="stop"><rect x="{x - 6}" y="{y - 6}" width="12" height="12" fill="#fff" '
            f'stroke="#202124"/><text x="{x + 9}" y="{y + 4}" font-size="12">S{i}</text></g>'
        )
    for alert in v.alerts:
        colour = SEVERITY_COLOUR.get(str(alert["severity"]), "#e0a800")
        span = [(p.lat, p.lon) for p in v.track if _in_span(p, alert)]
        if len(span) >= 2:
            parts.append(
                f'<path class="alert-span" d="{_path(proj, span)}" fill="none" stroke="{colour}" '
                f'stroke-width="6" stroke-opacity="0.7"/>'
            )
        x, y = proj(float(alert["lat"]), float(alert["lon"]))
        parts.append(
            f'<circle class="alert" cx="{x}" cy="{y}" r="9" fill="{colour}" fill-opacity="0.85" '
            f'stroke="#202124">'
            f"<title>{html.escape(str(alert['type']))} ({alert['severity']})</title></circle>"
        )
    if v.track:
        for point, label in ((v.track[0], "start"), (v.track[-1], "end")):
            x, y = proj(point.lat, point.lon)
            parts.append(f'<text class="{label}" x="{x + 6}" y="{y - 6}" font-size="12">{label}</text>')
    parts.append(svg_close(proj))
    return "".join(parts)


def svg_open(css_class: str, **data: str) -> str:
    """A map's ``<svg>`` element (``data-*`` attributes from ``data``) and its background."""
    attrs = "".join(f' data-{k}="{html.escape(v)}"' for k, v in data.items())
    return (
        f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {MAP_W} {MAP_H}" '
        f'width="{MAP_W}" height="{MAP_H}"{attrs}><rect width="{MAP_W}" height="{MAP_H}" fill="#f6f8fa"/>'
    )


def svg_zones(proj: Projection, zones: Iterable[MapZone]) -> list[str]:
    """Zone outlines: the permitted region's edge dashed blue, other zones purple."""
    parts = []
    for zone in zones:
        colour = "#1a73e8" if zone.kind == "region" else "#9334e6"
        dash = ' stroke-dasharray="8 4"' if zone.kind == "region" else ""
        for ring in _rings(zone.geometry):
            parts.append(
                f'<path class="zone zone-{html.escape(zone.kind)}" d="{_path(proj, ring)} Z" '
                f'fill="{colour}" fill-opacity="0.08" stroke="{colour}"{dash}>'
                f"<title>{html.escape(zone.name)} ({html.escape(zone.kind)})</title></path>"
            )
    return parts


def svg_close(proj: Projection) -> str:
    """Scale bar, north arrow and datum label, and the end of the ``<svg>``."""
    bar_m = _nice(proj.metres_per_px() * 150)
    bar_px = bar_m / proj.metres_per_px()
    return (
        f'<g class="scale"><path d="M20,{MAP_H - 20} h{bar_px:.1f}" stroke="#202124" stroke-width="3"/>'
        f'<text x="20" y="{MAP_H - 26}" font-size="12">{_metres(bar_m)}</text></g>'
        f'<text x="{MAP_W - 30}" y="24" font-size="16">N↑</text>'
        f'<text x="{MAP_W - 10}" y="{MAP_H - 8}" font-size="11" text-anchor="end">WGS-84</text></svg>'
    )


def _nice(value: float) -> float:
    exponent = 10 ** math.floor(math.log10(max(value, 1e-9)))
    return float(
        next(m * exponent for m in (5, 2, 1) if m * exponent <= value) if value >= exponent else exponent
    )


def _metres(m: float) -> str:
    return f"{m / 1000:g} km" if m >= 1000 else f"{m:g} m"


def svg_timeline(v: VehicleEvidence, req: Request) -> str:
    width, left = 860, 90
    total = (req.end - req.start).total_seconds() or 1.0

    def x(ts: datetime) -> float:
        clamped = min(max(ts, req.start), req.end)
        return round(left + (clamped - req.start).total_seconds() / total * (width - left - 10), 1)

    lanes: list[tuple[str, list[tuple[datetime, datetime, str, str]]]] = [
        ("orders", [(o["start_at"], o["end_at"], "#188038", f"order {o['order_id']}") for o in v.orders]),
        ("trips", [(t["start_at"], t["end_at"], "#1a73e8", f"trip {t['trip_id']}") for t in v.trips]),
        ("stops", [(s.start, s.end, "#5f6368", f"stop {s.seconds / 60:.0f} min") for s in v.stops]),
        (
            "alerts",
            [
                (
                    a["start_at"],
                    a["end_at"] or a["start_at"],
                    SEVERITY_COLOUR.get(str(a["severity"]), "#e0a800"),
                    f"{a['type']} ({a['severity']})",
                )
                for a in v.alerts
            ],
        ),
    ]
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 150" '
        f'width="{width}" height="150">'
    ]
    for row, (name, bars) in enumerate(lanes):
        y = 10 + row * 28
        parts.append(f'<text x="4" y="{y + 14}" font-size="12">{name}</text>')
        for start, end, colour, label in bars:
            x0, x1 = x(start), x(end)
            parts.append(
                f'<rect x="{x0}" y="{y}" width="{max(x1 - x0, 3):.1f}" height="18" fill="{colour}">'
                f"<title>{html.escape(label)}</title></rect>"
            )
    tz = ZoneInfo(req.timezone)
    for i, anchor in enumerate(("start", "middle", "middle", "middle", "end")):
        ts = req.start + (req.end - req.start) * i / 4
        parts.append(
            f'<text x="{x(ts)}" y="140" font-size="10" text-anchor="{anchor}">'
            f"{ts.astimezone(tz).strftime('%m-%d %H:%M')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def table_html(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body or '<tr><td>none</td></tr>'}</table>"


def vehicle_section(v: VehicleEvidence, req: Request) -> str:
    tz = ZoneInfo(req.timezone)
    near = f" — closest approach {v.closest_m:.0f} m" if v.closest_m is not None else ""
    return "".join(
        [
            f'<section class="vehicle"><h2>{html.escape(v.vehicle_id)} ({html.escape(v.org)}){near}</h2>',
            f"<p>{len(v.track)} fixes, {len(v.stops)} stops ≥ 5 min, {len(v.trips)} trips, "
            f"{len(v.alerts)} alerts, "
            f"{len(v.orders)} dispatch orders.</p>",
            svg_map(v, req),
            svg_timeline(v, req),
            table_html(
                "Stops",
                ("#", "from", "to", "minutes", "lat", "lon"),
                (
                    (
                        f"S{i}",
                        _local(s.start, tz),
                        _local(s.end, tz),
                        f"{s.seconds / 60:.0f}",
                        f"{s.lat:.6f}",
                        f"{s.lon:.6f}",
                    )
                    for i, s in enumerate(v.stops, 1)
                ),
            ),
            table_html(
                "Alerts",
                ("alert", "type", "severity", "status", "start", "end", "raised", "due"),
                (
                    (
                        a["alert_id"][:12],
                        a["type"],
                        a["severity"],
                        a["status"],
                        _local(a["start_at"], tz),
                        _local(a["end_at"], tz),
                        _local(a["raised_at"], tz),
                        _local(a["due_at"], tz),
                    )
                    for a in v.alerts
                ),
            ),
            table_html(
                "Trips",
                ("trip", "start", "end", "km", "max km/h", "fixes", "order"),
                (
                    (
                        t["trip_id"][:12],
                        _local(t["start_at"], tz),
                        _local(t["end_at"], tz),
                        f"{t['distance_m'] / 1000:.1f}",
                        f"{t['max_speed_kmh']:.0f}",
                        t["fix_count"],
                        t["order_id"] or "none",
                    )
                    for t in v.trips
                ),
            ),
            table_html(
                "Dispatch orders (派车单)",
                ("order", "start", "end", "purpose", "destination", "status"),
                (
                    (
                        o["order_id"],
                        _local(o["start_at"], tz),
                        _local(o["end_at"], tz),
                        o["purpose"],
                        o["destination"],
                        o["status"],
                    )
                    for o in v.orders
                ),
            ),
            "</section>",
        ]
    )


STYLE = """body{font-family:sans-serif;margin:24px;color:#202124}
table{border-collapse:collapse;margin-bottom:12px}
td,th{border:1px solid #dadce0;padding:3px 8px;font-size:13px;text-align:left}
.datum{background:#fef7e0;padding:8px}
section{border-top:2px solid #dadce0;margin-top:18px}"""


def render_html(vehicles: Sequence[VehicleEvidence], req: Request) -> str:
    tz = ZoneInfo(req.timezone)
    query = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in req.query.items()
    )
    sections = "".join(vehicle_section(v, req) for v in vehicles) or "<p>No official vehicle matched.</p>"
    return html_page(
        req.title,
        f"<p>Window {_local(req.start, tz)} – {_local(req.end, tz)} ({html.escape(req.timezone)}); generated "
        f"{_local(req.generated_at, tz)} by {html.escape(req.generated_by)}. Checksums of this file and its "
        f"exports are in manifest.json beside it.</p><table>{query}</table>{sections}",
    )


def html_page(title: str, body: str) -> str:
    """A self-contained page (no scripts, no network) with the report style and the datum note."""
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="datum"><b>Datum:</b> {html.escape(DATUM_NOTE)}</p>{body}</body></html>'
    )


def render_geojson(vehicles: Sequence[VehicleEvidence]) -> dict[str, Any]:
    features: list[dict[str, Any]] = []
    for v in vehicles:
        if v.track:
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "kind": "track",
                        "vehicle_id": v.vehicle_id,
                        "times": [p.ts.isoformat() for p in v.track],
                    },
                    "geometry": {"type": "LineString", "coordinates": [[p.lon, p.lat] for p in v.track]},
                }
            )
        for s in v.stops:
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "kind": "stop",
                        "vehicle_id": v.vehicle_id,
                        "start": s.start.isoformat(),
                        "end": s.end.isoformat(),
                    },
                    "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                }
            )
        for a in v.alerts:
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "kind": "alert",
                        "vehicle_id": v.vehicle_id,
                        "alert_id": a["alert_id"],
                        "type": a["type"],
                        "severity": a["severity"],
                        "start": a["start_at"].isoformat(),
                        "end": a["end_at"].isoformat() if a["end_at"] else None,
                    },
                    "geometry": {"type": "Point", "coordinates": [float(a["lon"]), float(a["lat"])]},
                }
            )
    # RFC 7946 GeoJSON is WGS-84 by definition; "datum" is informative for readers.
    return {"type": "FeatureCollection", "datum": "WGS-84", "features": features}


def render_gpx(vehicles: Sequence[VehicleEvidence]) -> str:
    tracks = []
    for v in vehicles:
        points = "".join(
            f'<trkpt lat="{p.lat:.7f}" lon="{p.lon:.7f}"><time>{p.ts.astimezone().isoformat()}</time></trkpt>'
            for p in v.track
        )
        tracks.append(f"<trk><name>{xml_escape(v.vehicle_id)}</name><trkseg>{points}</trkseg></trk>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="fleetwatch evidence" '
        f'xmlns="http://www.topografix.com/GPX/1/1">{"".join(tracks)}</gpx>\n'
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class Bundle:
    directory: Path
    html: Path
    manifest: Path
    manifest_sha256: str


def write_bundle(directory: Path, vehicles: Sequence[VehicleEvidence], req: Request) -> Bundle:
    """report.html, track.geojson, track.gpx and manifest.json (the others' SHA-256) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "report.html": render_html(vehicles, req),
        "track.geojson": json.dumps(render_geojson(vehicles), ensure_ascii=False, indent=1),
        "track.gpx": render_gpx(vehicles),
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    manifest = {
        "title": req.title,
        "generated_at": req.generated_at.isoformat(),
        "generated_by": req.generated_by,
        "datum": "WGS-84",
        "query": req.query,
        "window": [req.start.isoformat(), req.end.isoformat()],
        "vehicles": {
            v.vehicle_id: {
                "fixes": len(v.track),
                "trips": len(v.trips),
                "alerts": len(v.alerts),
                "orders": len(v.orders),
            }
            for v in vehicles
        },
        "files": {
            name: {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size}
            for name in files
        },
    }
    manifest_path = directory / "manifest.json"
    manifest_path.write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
    )
    return Bundle(directory, directory / "report.html", manifest_path, sha256_file(manifest_path))
