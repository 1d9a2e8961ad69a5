"""The five dashboards: live map, alerts and SLA, track replay, fleet KPIs, pipeline health.

Rules the queries follow (checked in tests/dashboards): the live map reads `vehicle_state` and
`alerts`, never `positions`; KPIs read the `kpi_daily` rollup (`fleetwatch db maintain`) plus the
live `vehicle_state`; every query filters on ``org IN ($unit)`` (or one vehicle), so the city and
unit pickers and the database's row-level security narrow the same thing.
"""

from __future__ import annotations

from dashboards.spec import (
    Json,
    Query,
    annotation,
    custom_variable,
    dashboard,
    panel,
    query_variable,
    textbox_variable,
    thresholds,
    value_colours,
)

#: Where Grafana serves the permitted regions' outlines from (copied by `fleetwatch dashboards provision`).
REGIONS_URL = "public/maps/fleetwatch-regions.geojson"
TIME_ZONE = "Asia/Shanghai"

STATUS_COLOURS = {"moving": "green", "parked": "blue", "offline": "text", "alerting": "red"}
SEVERITY_COLOURS = {"yellow": "yellow", "red": "red"}
ALERT_TYPES = [
    "off_hours",
    "out_of_area",
    "private_destination",
    "depot_night",
    "overspeed",
    "offline",
    "power_cut",
]

# --- variables (the org tree) -------------------------------------------------------------------

CITY = query_variable(
    "city",
    "City",
    # org_city() is the level-1 ancestor; a city or unit account sees only its own subtree, so its
    # picker offers only its city.
    "SELECT DISTINCT org_city(org_id) AS __value FROM orgs WHERE org_city(org_id) IS NOT NULL ORDER BY 1",
)
UNIT = query_variable(
    "unit",
    "Unit",
    "SELECT org_id AS __value, name || ' (' || org_id || ')' AS __text FROM orgs "
    "WHERE org_city(org_id) IN ($city) ORDER BY org_id",
)
ORG_VARIABLES = [CITY, UNIT]


def _org_filter(column: str = "org") -> str:
    return f"{column} IN ($unit)"


# --- 1. live map ----------------------------------------------------------------------------------


def _geomap_options(layers: list[Json], view: Json, basemap: Json | None) -> Json:
    options: Json = {
        "view": view,
        "controls": {"showZoom": True, "mouseWheelZoom": True, "showAttribution": True, "showScale": True},
        "layers": layers,
        "tooltip": {"mode": "details"},
    }
    # Offline default: the permitted regions' outlines are the base layer; a tile URL setting swaps
    # in an XYZ basemap (which must be WGS-84/CGCS2000, see README).
    options["basemap"] = basemap or _regions_layer("Permitted regions (offline basemap)")
    return options


def _regions_layer(name: str) -> Json:
    return {
        "type": "geojson",
        "name": name,
        "config": {
            "src": REGIONS_URL,
            "rules": [],
            "style": {"color": {"fixed": "dark-blue"}, "opacity": 0.3},
        },
    }


def _markers(name: str, ref_id: str, colour_field: str, text_field: str, size: int) -> Json:
    return {
        "type": "markers",
        "name": name,
        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
        "filterData": {"id": "byRefId", "options": ref_id},
        "tooltip": True,
        "config": {
            "showLegend": True,
            "style": {
                "size": {"fixed": size},
                "color": {"field": colour_field, "fixed": "green"},
                "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
                "text": {"mode": "field", "field": text_field, "fixed": ""},
                "textConfig": {"fontSize": 9, "offsetY": -10, "textAlign": "center"},
            },
        },
    }


def _colour_override(field_name: str, colours: dict[str, str]) -> Json:
    return {
        "matcher": {"id": "byName", "options": field_name},
        "properties": [
            {"id": "mappings", "value": value_colours(colours)},
            {"id": "color", "value": {"mode": "fixed"}},
        ],
    }


def live_map(basemap: Json | None = None) -> Json:
    vehicles = Query(
        f"""
SELECT vehicle_id, org, lat, lon, status, speed_kmh, ts AS last_fix,
       cardinality(open_alert_ids) AS open_alerts
FROM vehicle_state
WHERE {_org_filter()}""",
        "A",
        needs={"vehicle_id": "text", "lat": "number", "lon": "number", "status": "text"},
    )
    open_alerts = Query(
        f"""
SELECT alert_id, type, severity, vehicle_id, lat, lon, raised_at, due_at
FROM alerts
WHERE status IN ('open', 'acknowledged') AND {_org_filter()}""",
        "B",
        needs={"alert_id": "text", "lat": "number", "lon": "number", "severity": "text"},
    )
    layers = [
        _regions_layer("Permitted regions"),
        _markers("Vehicles (by status)", "A", "status", "vehicle_id", 5),
        _markers("Open alerts (by severity)", "B", "severity", "type", 9),
    ]
    view = {"id": "coords", "lat": 32.05, "lon": 118.95, "zoom": 8}
    counts = Query(
        f"""
SELECT count(*) FILTER (WHERE status = 'moving') AS moving,
       count(*) FILTER (WHERE status = 'parked') AS parked,
       count(*) FILTER (WHERE status = 'alerting') AS alerting,
       count(*) FILTER (WHERE status = 'offline') AS offline,
       count(*) AS vehicles
FROM vehicle_state
WHERE {_org_filter()}""",
        needs={"moving": "number", "parked": "number", "alerting": "number", "offline": "number"},
    )
    panels = [
        panel(
            "geomap",
            "Vehicles and open alerts",
            [vehicles, open_alerts],
            (0, 0, 18, 22),
            description="Every vehicle from vehicle_state, coloured by status; open and acknowledged "
            "alerts as a layer coloured by severity. Positions are WGS-84.",
            options=_geomap_options(layers, view, basemap),
            field_config={
                "defaults": {},
                "overrides": [
                    _colour_override("status", STATUS_COLOURS),
                    _colour_override("severity", SEVERITY_COLOURS),
                ],
            },
        ),
        panel(
            "stat",
            "Vehicles by status",
            [counts],
            (18, 0, 6, 22),
            options={
                "orientation": "vertical",
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
                "textMode": "value_and_name",
                "colorMode": "background",
            },
            field_config={
                "defaults": {"color": {"mode": "thresholds"}, "thresholds": thresholds((None, "blue"))},
                "overrides": [],
            },
        ),
    ]
    return dashboard(
        "fw-live-map",
        "fleetwatch · Live map",
        panels,
        ORG_VARIABLES,
        time_from="now-15m",
        refresh="10s",
        description="Where every vehicle is now (vehicle_state), with open alerts.",
    )


# --- 2. alerts and SLA ----------------------------------------------------------------------------

_ALERT_FILTER = "$__timeFilter(raised_at) AND org IN ($unit) AND type IN ($type) AND severity IN ($severity)"
_STATUS_COUNTS = """count(*) FILTER (WHERE status = 'open') AS open,
       count(*) FILTER (WHERE status = 'acknowledged') AS acknowledged,
       count(*) FILTER (WHERE status = 'closed') AS closed,
       count(*) FILTER (WHERE status IN ('open', 'acknowledged') AND due_at < now()) AS overdue"""
_A_STATUS_COUNTS = _STATUS_COUNTS.replace("status", "a.status").replace("due_at", "a.due_at")
_COUNT_NEEDS = {"open": "number", "acknowledged": "number", "closed": "number", "overdue": "number"}
REPLAY_LINK = (
    "/d/fw-track-replay/track-replay?var-vehicle=${__data.fields.vehicle_id}&var-alert=${__data.fields.alert_id}"
    "&from=${__data.fields.replay_from}&to=${__data.fields.replay_to}"
)


def alerts_sla() -> Json:
    totals = Query(f"SELECT {_STATUS_COUNTS}\nFROM alerts\nWHERE {_ALERT_FILTER}", needs=_COUNT_NEEDS)
    by_type = Query(
        f"SELECT type, {_STATUS_COUNTS}\nFROM alerts\nWHERE {_ALERT_FILTER}\nGROUP BY type ORDER BY type",
        needs={"type": "text", **_COUNT_NEEDS},
    )
    by_severity = Query(
        f"SELECT severity, {_STATUS_COUNTS}\nFROM alerts\nWHERE {_ALERT_FILTER}\n"
        "GROUP BY severity ORDER BY severity",
        needs={"severity": "text", **_COUNT_NEEDS},
    )
    by_org = Query(
        f"""SELECT a.org, o.name, {_A_STATUS_COUNTS},
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM now() - a.raised_at))
              FILTER (WHERE a.status IN ('open', 'acknowledged')) / 3600)::numeric, 1) AS median_open_age_h
FROM alerts a LEFT JOIN orgs o ON o.org_id = a.org
WHERE {_ALERT_FILTER.replace("raised_at", "a.raised_at").replace("org IN", "a.org IN")}
GROUP BY a.org, o.name ORDER BY overdue DESC, a.org""",
        needs={"org": "text", **_COUNT_NEEDS},
    )
    raised = Query(
        f"""SELECT $__timeGroupAlias(raised_at, $__interval), type AS metric, count(*) AS alerts
FROM alerts
WHERE {_ALERT_FILTER}
GROUP BY 1, 2 ORDER BY 1""",
        format="time_series",
        needs={"time": "time", "metric": "text", "alerts": "number"},
    )
    listing = Query(
        f"""SELECT alert_id, type, severity, status,
       CASE WHEN status IN ('open', 'acknowledged') AND due_at < now() THEN 'overdue' ELSE '' END AS sla,
       vehicle_id, org, start_at, end_at, raised_at, due_at, trip_id, details::text AS evidence,
       (extract(epoch FROM start_at - interval '30 minutes') * 1000)::bigint AS replay_from,
       (extract(epoch FROM coalesce(end_at, start_at) + interval '30 minutes') * 1000)::bigint AS replay_to
FROM alerts
WHERE {_ALERT_FILTER}
ORDER BY (status IN ('open', 'acknowledged') AND due_at < now()) DESC, raised_at DESC
LIMIT 500""",
        needs={
            "alert_id": "text",
            "vehicle_id": "text",
            "status": "text",
            "replay_from": "number",
            "replay_to": "number",
            "evidence": "text",
        },
    )
    link = {"title": "Track replay and evidence", "url": REPLAY_LINK}
    stat_options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
        "textMode": "value_and_name",
        "colorMode": "background",
    }
    bar_options = {
        "orientation": "horizontal",
        "stacking": "normal",
        "xField": None,
        "legend": {"showLegend": True},
    }
    panels = [
        panel(
            "stat",
            "Alerts raised in range by status",
            [totals],
            (0, 0, 24, 4),
            options=stat_options,
            field_config={
                "defaults": {"thresholds": thresholds((None, "blue"))},
                "overrides": [
                    {
                        "matcher": {"id": "byName", "options": "overdue"},
                        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}],
                    }
                ],
            },
        ),
        panel("barchart", "By type", [by_type], (0, 4, 8, 9), options={**bar_options, "xField": "type"}),
        panel(
            "barchart",
            "By severity (三色预警)",
            [by_severity],
            (8, 4, 8, 9),
            options={**bar_options, "xField": "severity"},
        ),
        panel(
            "timeseries",
            "Raised per interval, by type",
            [raised],
            (16, 4, 8, 9),
            field_config={
                "defaults": {"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}},
                "overrides": [],
            },
        ),
        panel("table", "By org (overdue first)", [by_org], (0, 13, 24, 7)),
        panel(
            "table",
            "Alerts (overdue first): click a row for its track replay and evidence",
            [listing],
            (0, 20, 24, 12),
            field_config={
                "defaults": {"links": [link]},
                "overrides": [
                    {
                        "matcher": {"id": "byRegexp", "options": "replay_.*"},
                        "properties": [{"id": "custom.hidden", "value": True}],
                    }
                ],
            },
        ),
    ]
    variables = [
        *ORG_VARIABLES,
        custom_variable("type", "Type", ALERT_TYPES),
        custom_variable("severity", "Severity", list(SEVERITY_COLOURS)),
    ]
    return dashboard(
        "fw-alerts-sla",
        "fleetwatch · Alerts and SLA",
        panels,
        variables,
        time_from="now-7d",
        refresh="1m",
        description="Alerts by status, type, severity and org; 3-day SLA (due_at).",
    )


# --- 3. track replay ----------------------------------------------------------------------------

_ONE_VEHICLE = "vehicle_id = '$vehicle'"


def track_replay(basemap: Json | None = None) -> Json:
    route = Query(
        f"""SELECT ts AS time, lat, lon, speed_kmh, ignition
FROM positions
WHERE {_ONE_VEHICLE} AND $__timeFilter(ts) AND fix_valid IS NOT FALSE
ORDER BY ts""",
        needs={"time": "time", "lat": "number", "lon": "number"},
    )
    speed = Query(
        f"""SELECT ts AS time, speed_kmh AS "speed km/h"
FROM positions
WHERE {_ONE_VEHICLE} AND $__timeFilter(ts)
ORDER BY ts""",
        format="time_series",
        needs={"time": "time", "speed km/h": "number"},
    )
    ignition = Query(
        f"""SELECT ts AS time, CASE WHEN ignition THEN 'on' ELSE 'off' END AS ignition
FROM positions
WHERE {_ONE_VEHICLE} AND $__timeFilter(ts)
ORDER BY ts""",
        needs={"time": "time", "ignition": "text"},
    )
    trips = Query(
        f"""SELECT start_at, end_at, round((distance_m / 1000)::numeric, 2) AS km, max_speed_kmh, fix_count,
       order_id, trip_id
FROM trips
WHERE {_ONE_VEHICLE} AND NOT retracted AND start_at <= $__timeTo() AND end_at >= $__timeFrom()
ORDER BY start_at""",
        needs={"start_at": "time", "end_at": "time", "km": "number"},
    )
    evidence = Query(
        f"""SELECT alert_id, type, severity, status, start_at, end_at, raised_at, due_at, lat, lon,
       details::text AS details, trip_id
FROM alerts
WHERE alert_id = '$alert'
   OR ({_ONE_VEHICLE} AND start_at <= $__timeTo() AND coalesce(end_at, start_at) >= $__timeFrom())
ORDER BY start_at""",
        needs={"alert_id": "text", "type": "text", "details": "text"},
    )
    history = Query(
        f"""SELECT e.at AS time, e.alert_id, e.actor, e.kind, e.from_status, e.to_status, e.reason
FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id
WHERE e.alert_id = '$alert'
   OR (a.{_ONE_VEHICLE} AND a.start_at <= $__timeTo() AND coalesce(a.end_at, a.start_at) >= $__timeFrom())
ORDER BY e.at""",
        needs={"time": "time", "alert_id": "text", "actor": "text", "to_status": "text"},
    )
    layers = [
        _regions_layer("Permitted regions"),
        {
            "type": "route",
            "name": "Route",
            "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
            "filterData": {"id": "byRefId", "options": "A"},
            "tooltip": True,
            "config": {
                "arrow": 1,
                "style": {
                    "size": {"fixed": 3},
                    "color": {"field": "speed_kmh", "fixed": "blue"},
                    "lineWidth": 3,
                },
            },
        },
    ]
    panels = [
        panel(
            "geomap",
            "Route",
            [route],
            (0, 0, 14, 16),
            description="The vehicle's valid fixes in the time range, in order (WGS-84).",
            options=_geomap_options(layers, {"id": "fit", "allLayers": True, "padding": 5}, basemap),
            field_config={
                "defaults": {"color": {"mode": "continuous-GrYlRd"}, "unit": "velocitykmh"},
                "overrides": [],
            },
        ),
        panel(
            "table",
            "Alerts of this vehicle in range (and the linked alert): evidence",
            [evidence],
            (14, 0, 10, 8),
        ),
        panel("table", "Alert history (who, when, why)", [history], (14, 8, 10, 8)),
        panel(
            "timeseries",
            "Speed",
            [speed],
            (0, 16, 24, 7),
            interval="10s",
            field_config={"defaults": {"unit": "velocitykmh"}, "overrides": []},
        ),
        panel(
            "state-timeline",
            "Ignition",
            [ignition],
            (0, 23, 24, 4),
            field_config={
                "defaults": {"mappings": value_colours({"on": "green", "off": "text"})},
                "overrides": [],
            },
        ),
        panel("table", "Trips", [trips], (0, 27, 24, 7)),
    ]
    vehicle = query_variable(
        "vehicle",
        "Vehicle",
        "SELECT vehicle_id FROM vehicles WHERE org IN ($unit) ORDER BY vehicle_id",
        multi=False,
        include_all=False,
    )
    annotations = [
        annotation(
            "Trips",
            Query(
                f"""SELECT start_at AS time, end_at AS timeend,
       'trip ' || round((distance_m / 1000)::numeric, 1) || ' km, max '
           || round(max_speed_kmh::numeric) || ' km/h'
           AS text, 'trip' AS tags
FROM trips
WHERE {_ONE_VEHICLE} AND NOT retracted AND $__timeFilter(start_at)
ORDER BY start_at""",
                needs={"time": "time", "timeend": "time", "text": "text"},
            ),
            "blue",
        ),
        annotation(
            "Alerts",
            Query(
                f"""SELECT start_at AS time, coalesce(end_at, start_at) AS timeend,
       type || ' (' || severity || ', ' || status || ')' AS text, type AS tags
FROM alerts
WHERE {_ONE_VEHICLE} AND $__timeFilter(start_at)
ORDER BY start_at""",
                needs={"time": "time", "timeend": "time", "text": "text"},
            ),
            "red",
        ),
    ]
    return dashboard(
        "fw-track-replay",
        "fleetwatch · Track replay",
        panels,
        [*ORG_VARIABLES, vehicle, textbox_variable("alert", "Alert id")],
        time_from="now-24h",
        annotations=annotations,
        description="One vehicle over a time range: route, speed, ignition, trips and alerts.",
    )


# --- 4. fleet KPIs --------------------------------------------------------------------------------

# Civil days of the platform's time zone inside the dashboard's time range.
_KPI_DAYS = (
    f"k.day BETWEEN ($__timeFrom()::timestamptz AT TIME ZONE '{TIME_ZONE}')::date "
    f"AND ($__timeTo()::timestamptz AT TIME ZONE '{TIME_ZONE}')::date"
)
_KPI_FILTER = f"{_KPI_DAYS} AND k.org IN ($unit)"
_MEDIAN_CLOSE_H = f"""(SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY s) / 3600)::numeric, 1)
        FROM kpi_daily k2, unnest(k2.close_seconds) s
        WHERE k2.org = k.org AND {_KPI_DAYS.replace("k.day", "k2.day")})"""


def fleet_kpis() -> Json:
    per_org = Query(
        f"""SELECT k.org, o.name,
       max(k.vehicles_registered) AS vehicles,
       round(sum(k.km_driven)::numeric, 1) AS km_driven,
       sum(k.trips) AS trips,
       round(100.0 * sum(k.off_hours_trips) / nullif(sum(k.trips), 0), 1) AS off_hours_trip_pct,
       round((100.0 * sum(k.off_hours_km) / nullif(sum(k.km_driven), 0))::numeric, 1) AS off_hours_km_pct,
       round(100.0 * sum(k.alerts_raised) / nullif(max(k.vehicles_registered), 0), 1)
           AS alerts_per_100_vehicles,
       {_MEDIAN_CLOSE_H} AS median_hours_to_close,
       (SELECT count(*) FROM vehicle_state v WHERE v.org = k.org AND v.status = 'offline')
           AS terminals_offline_now,
       sum(greatest(k.vehicles_registered - k.vehicles_reporting, 0)) AS silent_vehicle_days
FROM kpi_daily k LEFT JOIN orgs o ON o.org_id = k.org
WHERE {_KPI_FILTER}
GROUP BY k.org, o.name
ORDER BY k.org""",
        needs={
            "org": "text",
            "km_driven": "number",
            "trips": "number",
            "off_hours_trip_pct": "number",
            "alerts_per_100_vehicles": "number",
            "median_hours_to_close": "number",
            "terminals_offline_now": "number",
        },
    )
    totals = Query(
        f"""SELECT round(sum(k.km_driven)::numeric) AS km_driven, sum(k.trips) AS trips,
       round(100.0 * sum(k.off_hours_trips) / nullif(sum(k.trips), 0), 1) AS off_hours_trip_pct,
       round(100.0 * sum(k.alerts_raised)
             / nullif((SELECT count(*) FROM vehicles WHERE org IN ($unit)), 0), 1)
           AS alerts_per_100_vehicles,
       (SELECT round((percentile_cont(0.5) WITHIN GROUP (ORDER BY s) / 3600)::numeric, 1)
          FROM kpi_daily k2, unnest(k2.close_seconds) s
          WHERE {_KPI_DAYS.replace("k.day", "k2.day")} AND k2.org IN ($unit)) AS median_hours_to_close,
       (SELECT count(*) FROM vehicle_state WHERE status = 'offline' AND org IN ($unit))
           AS terminals_offline_now
FROM kpi_daily k
WHERE {_KPI_FILTER}""",
        needs={
            "km_driven": "number",
            "trips": "number",
            "off_hours_trip_pct": "number",
            "alerts_per_100_vehicles": "number",
            "terminals_offline_now": "number",
        },
    )
    km_daily = Query(
        f"""SELECT (k.day::timestamp AT TIME ZONE '{TIME_ZONE}') AS time, org_city(k.org) AS metric,
       sum(k.km_driven) AS km
FROM kpi_daily k
WHERE {_KPI_FILTER}
GROUP BY 1, 2 ORDER BY 1""",
        format="time_series",
        needs={"time": "time", "metric": "text", "km": "number"},
    )
    off_hours_daily = Query(
        f"""SELECT (k.day::timestamp AT TIME ZONE '{TIME_ZONE}') AS time,
       100.0 * sum(k.off_hours_trips) / nullif(sum(k.trips), 0) AS "off-hours trips %"
FROM kpi_daily k
WHERE {_KPI_FILTER}
GROUP BY 1 ORDER BY 1""",
        format="time_series",
        needs={"time": "time", "off-hours trips %": "number"},
    )
    panels = [
        panel(
            "stat",
            "Fleet in range",
            [totals],
            (0, 0, 24, 4),
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
                "textMode": "value_and_name",
            },
        ),
        panel(
            "table",
            "Per org",
            [per_org],
            (0, 4, 24, 10),
            description="From kpi_daily (rebuilt by `fleetwatch db maintain`); terminals offline now from "
            "vehicle_state.",
        ),
        panel("timeseries", "km driven per day, by city", [km_daily], (0, 14, 12, 8), interval="1d"),
        panel(
            "timeseries",
            "Off-hours share of trips per day",
            [off_hours_daily],
            (12, 14, 12, 8),
            interval="1d",
            field_config={"defaults": {"unit": "percent"}, "overrides": []},
        ),
    ]
    return dashboard(
        "fw-fleet-kpis",
        "fleetwatch · Fleet KPIs",
        panels,
        ORG_VARIABLES,
        time_from="now-30d",
        description="Per org: km, trips, off-hours share, alerts per 100 vehicles, time to close, "
        "terminals offline. Reads the kpi_daily rollup.",
    )


# --- 5. pipeline health ---------------------------------------------------------------------------

# Fixes stored in the range by arrival; ts bounds let TimescaleDB skip chunks (a fix arrives after
# its ts, and terminals' backlogs are bounded by the late horizon: 3 h).
_ARRIVED = (
    "ts > $__timeFrom()::timestamptz - interval '3 hours' AND ts <= $__timeTo()::timestamptz "
    "AND {column} BETWEEN $__timeFrom() AND $__timeTo()"
)


def pipeline_health() -> Json:
    ingest = Query(
        f"""SELECT $__timeGroupAlias(received_at, $__interval),
       count(*) / ($__interval_ms / 1000.0) AS "ingest fixes/s"
FROM positions
WHERE {_ARRIVED.format(column="received_at")} AND org IN ($unit)
GROUP BY 1 ORDER BY 1""",
        format="time_series",
        needs={"time": "time", "ingest fixes/s": "number"},
    )
    sink = Query(
        f"""SELECT $__timeGroupAlias(stored_at, $__interval),
       count(*) / ($__interval_ms / 1000.0) AS "sink rows/s"
FROM positions
WHERE {_ARRIVED.format(column="stored_at")} AND org IN ($unit)
GROUP BY 1 ORDER BY 1""",
        "B",
        format="time_series",
        needs={"time": "time", "sink rows/s": "number"},
    )
    lags = Query(
        f"""SELECT $__timeGroupAlias(stored_at, $__interval),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts))
           AS "ingest lag p95 s",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - received_at))
           AS "sink lag p95 s",
       max(extract(epoch FROM stored_at - received_at)) AS "sink lag max s"
FROM positions
WHERE {_ARRIVED.format(column="stored_at")} AND org IN ($unit)
GROUP BY 1 ORDER BY 1""",
        format="time_series",
        needs={"time": "time", "ingest lag p95 s": "number", "sink lag p95 s": "number"},
    )
    worker = Query(
        """SELECT $__timeGroupAlias(e.at, $__interval), e.kind AS metric,
       count(*) / ($__interval_ms / 1000.0) AS "per s"
FROM alert_events e
WHERE $__timeFilter(e.at) AND e.actor = 'detection' AND e.org IN ($unit)
GROUP BY 1, 2 ORDER BY 1""",
        format="time_series",
        needs={"time": "time", "metric": "text", "per s": "number"},
    )
    worker_lag = Query(
        """SELECT $__timeGroupAlias(e.at, $__interval),
       max(extract(epoch FROM e.at - a.raised_at)) AS "alert raised -> stored, max s"
FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id
WHERE $__timeFilter(e.at) AND e.kind = 'raised' AND e.org IN ($unit)
GROUP BY 1 ORDER BY 1""",
        format="time_series",
        needs={"time": "time", "alert raised -> stored, max s": "number"},
    )
    freshness = Query(
        """SELECT extract(epoch FROM now() - (SELECT max(ts) FROM positions WHERE org IN ($unit)))
           AS "newest fix, s ago",
       extract(epoch FROM now() - (SELECT max(stored_at) FROM vehicle_state WHERE org IN ($unit)))
           AS "live map updated, s ago",
       (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - ts))
          FROM vehicle_state WHERE org IN ($unit)) AS "live map fix -> stored p95 s",
       extract(epoch FROM now() - (SELECT max(at) FROM alert_events WHERE org IN ($unit)))
           AS "newest alert event, s ago"
""",
        needs={"newest fix, s ago": "number", "live map updated, s ago": "number"},
    )
    panels = [
        panel(
            "stat",
            "Freshness",
            [freshness],
            (0, 0, 24, 4),
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
                "textMode": "value_and_name",
            },
            field_config={
                "defaults": {
                    "unit": "s",
                    "thresholds": thresholds((None, "green"), (60, "orange"), (300, "red")),
                },
                "overrides": [],
            },
        ),
        panel(
            "timeseries",
            "Ingest (bridge -> Kafka) and sink (-> TimescaleDB) rates",
            [ingest, sink],
            (0, 4, 12, 8),
        ),
        panel(
            "timeseries",
            "Ingest and sink lags",
            [lags],
            (12, 4, 12, 8),
            field_config={"defaults": {"unit": "s"}, "overrides": []},
        ),
        panel("timeseries", "Worker output: alert changes stored per second", [worker], (0, 12, 12, 8)),
        panel(
            "timeseries",
            "Worker lag: alert qualified -> stored",
            [worker_lag],
            (12, 12, 12, 8),
            field_config={"defaults": {"unit": "s"}, "overrides": []},
        ),
    ]
    return dashboard(
        "fw-pipeline",
        "fleetwatch · Pipeline health",
        panels,
        ORG_VARIABLES,
        time_from="now-15m",
        refresh="30s",
        description="Rates and lags of ingest, workers and sink, from what each stage stamps.",
    )


def all_dashboards(basemap: Json | None = None) -> dict[str, Json]:
    """File name -> dashboard JSON; ``basemap`` replaces the offline base layer (an XYZ tile layer)."""
    return {
        "live-map.json": live_map(basemap),
        "alerts-sla.json": alerts_sla(),
        "track-replay.json": track_replay(basemap),
        "fleet-kpis.json": fleet_kpis(),
        "pipeline-health.json": pipeline_health(),
    }


def xyz_basemap(url: str, attribution: str = "") -> Json:
    return {"type": "xyz", "name": "Basemap", "config": {"url": url, "attribution": attribution}}
