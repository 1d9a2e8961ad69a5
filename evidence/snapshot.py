"""The fleet at a glance as one self-contained HTML page: every vehicle on a map by status and the
open alerts by severity, drawn with the evidence report's map code (no Grafana, no network)."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from evidence.query import Conn
from evidence.report import (
    SEVERITY_COLOUR,
    MapZone,
    Projection,
    html_page,
    svg_close,
    svg_open,
    svg_zones,
    table_html,
)

#: Live-map colours per vehicle status (the Grafana live map uses the same four statuses).
STATUS_COLOUR = {"moving": "#188038", "parked": "#5f6368", "alerting": "#e8710a", "offline": "#202124"}
SEVERITIES = ("red", "yellow")


@dataclass(frozen=True, slots=True)
class VehicleDot:
    vehicle_id: str
    org: str
    status: str
    ts: datetime
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class AlertDot:
    alert_id: str
    type: str
    severity: str
    vehicle_id: str
    org: str
    start: datetime
    lat: float
    lon: float


def fleet_now(
    conn: Conn, vehicle_ids: Sequence[str] | None = None
) -> tuple[list[VehicleDot], list[AlertDot]]:
    """Every vehicle's stored state and every open or acknowledged (not retracted) alert; only
    ``vehicle_ids`` when given."""
    where, args = (
        ("WHERE vehicle_id = ANY(%s)", (list(vehicle_ids),)) if vehicle_ids is not None else ("", ())
    )
    vehicles = [
        VehicleDot(*row)
        for row in conn.execute(
            f"SELECT vehicle_id, org, status, ts, lat, lon FROM vehicle_state {where} ORDER BY vehicle_id",
            args,
        )
    ]
    alert_where = "status IN ('open', 'acknowledged')" + (" AND vehicle_id = ANY(%s)" if where else "")
    alerts = [
        AlertDot(*row)
        for row in conn.execute(
            "SELECT alert_id, type, severity, vehicle_id, org, start_at, lat, lon FROM alerts "
            f"WHERE {alert_where} ORDER BY severity, start_at",
            args,
        )
    ]
    return vehicles, alerts


def svg_fleet_map(
    vehicles: Sequence[VehicleDot], alerts: Sequence[AlertDot], zones: Sequence[MapZone]
) -> str:
    extent = [(v.lat, v.lon) for v in vehicles] + [(a.lat, a.lon) for a in alerts]
    extent += [
        (lat, lon) for z in zones if z.kind == "region" for lon, lat in z.geometry.envelope.exterior.coords
    ]
    if not extent:
        return "<p>No vehicle has reported yet.</p>"
    proj = Projection(extent)
    parts = [
        svg_open("fleet-map", vehicles=str(len(vehicles)), alerts=str(len(alerts))),
        *svg_zones(proj, zones),
    ]
    for v in vehicles:
        x, y = proj(v.lat, v.lon)
        parts.append(
            f'<circle class="vehicle status-{html.escape(v.status)}" cx="{x}" cy="{y}" r="4" '
            f'fill="{STATUS_COLOUR.get(v.status, "#5f6368")}" stroke="#fff" stroke-width="0.8">'
            f"<title>{html.escape(v.vehicle_id)} {html.escape(v.status)}</title></circle>"
        )
    for a in alerts:  # on top of the vehicles: a ring in the severity colour
        x, y = proj(a.lat, a.lon)
        parts.append(
            f'<circle class="alert severity-{html.escape(a.severity)}" cx="{x}" cy="{y}" r="9" fill="none" '
            f'stroke="{SEVERITY_COLOUR.get(a.severity, "#e0a800")}" stroke-width="3">'
            f"<title>{html.escape(a.type)} ({html.escape(a.severity)}) "
            f"{html.escape(a.vehicle_id)}</title></circle>"
        )
    parts.append(svg_close(proj))
    return "".join(parts)


def _legend() -> str:
    items = [(f"vehicle {s}", c, "fill") for s, c in STATUS_COLOUR.items()]
    items += [(f"open alert {s}", SEVERITY_COLOUR[s], "ring") for s in SEVERITIES]
    spans = "".join(
        '<span class="legend-item"><svg width="14" height="14"><circle cx="7" cy="7" r="5" '
        + (f'fill="{c}"/>' if kind == "fill" else f'fill="none" stroke="{c}" stroke-width="2.5"/>')
        + f"</svg> {html.escape(label)}</span> "
        for label, c, kind in items
    )
    return f'<p class="legend">{spans}</p>'


def render_snapshot(
    vehicles: Sequence[VehicleDot],
    alerts: Sequence[AlertDot],
    zones: Sequence[MapZone],
    generated_at: datetime,
    timezone: str,
    title: str = "fleetwatch: the fleet now",
) -> str:
    tz = ZoneInfo(timezone)
    by_status = Counter(v.status for v in vehicles)
    by_type_severity = Counter((a.type, a.severity) for a in alerts)
    types = sorted({t for t, _ in by_type_severity})
    local = generated_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    body = "".join(
        [
            f"<p>{len(vehicles)} vehicles, {len(alerts)} open alerts; "
            f"generated {local} ({html.escape(timezone)}) "
            "from the database (vehicle_state, alerts).</p>",
            _legend(),
            svg_fleet_map(vehicles, alerts, zones),
            table_html(
                "Vehicles by status",
                ("status", "vehicles"),
                [(s, by_status.get(s, 0)) for s in STATUS_COLOUR],
            ),
            table_html(
                "Open alerts by type and severity",
                ("type", *SEVERITIES, "total"),
                [
                    (
                        t,
                        *(by_type_severity.get((t, s), 0) for s in SEVERITIES),
                        sum(by_type_severity.get((t, s), 0) for s in SEVERITIES),
                    )
                    for t in types
                ],
            ),
            table_html(
                "Open alerts",
                ("alert", "type", "severity", "vehicle", "org", "start"),
                [
                    (
                        a.alert_id[:12],
                        a.type,
                        a.severity,
                        a.vehicle_id,
                        a.org,
                        a.start.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                    )
                    for a in sorted(alerts, key=lambda a: (SEVERITIES.index(a.severity), a.start))
                ],
            ),
        ]
    )
    return html_page(title, body)


def write_snapshot(
    conn: Conn,
    path: Path,
    zones: Sequence[MapZone],
    timezone: str,
    vehicle_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> tuple[list[VehicleDot], list[AlertDot]]:
    vehicles, alerts = fleet_now(conn, vehicle_ids)
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = now or datetime.now(ZoneInfo(timezone))
    path.write_text(render_snapshot(vehicles, alerts, zones, generated, timezone), encoding="utf-8")
    return vehicles, alerts
