"""The dashboards' rollup tables (kpi_daily), rebuilt for recent days by `fleetwatch db maintain`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg

#: Days are civil days of the platform's time zone (DESIGN §4).
TIME_ZONE = "Asia/Shanghai"

# One statement: every figure of (day, org) from the tables that own it. Trips and alerts count
# when not retracted; an off-hours trip is one with an off_hours alert naming it; closes come
# from alert_events (the workflow's history), dated by when the close happened.
_REFRESH_SQL = """
WITH days AS (
    SELECT d::date AS day FROM generate_series(%(first)s::date, %(last)s::date, interval '1 day') d
), fixes AS (
    SELECT (ts AT TIME ZONE %(tz)s)::date AS day, org, count(*) AS fixes,
           count(DISTINCT vehicle_id) AS vehicles_reporting
    FROM positions
    WHERE ts >= (%(first)s::date)::timestamp AT TIME ZONE %(tz)s
      AND ts < (%(last)s::date + 1)::timestamp AT TIME ZONE %(tz)s
    GROUP BY 1, 2
), trip_rows AS (
    SELECT (t.start_at AT TIME ZONE %(tz)s)::date AS day, t.org, t.distance_m,
           EXISTS (SELECT 1 FROM alerts a WHERE a.trip_id = t.trip_id AND a.type = 'off_hours'
                   AND a.status <> 'retracted') AS off_hours
    FROM trips t
    WHERE NOT t.retracted
      AND t.start_at >= (%(first)s::date)::timestamp AT TIME ZONE %(tz)s
      AND t.start_at < (%(last)s::date + 1)::timestamp AT TIME ZONE %(tz)s
), trip_sums AS (
    SELECT day, org, count(*) AS trips, sum(distance_m) / 1000.0 AS km_driven,
           count(*) FILTER (WHERE off_hours) AS off_hours_trips,
           coalesce(sum(distance_m) FILTER (WHERE off_hours), 0) / 1000.0 AS off_hours_km
    FROM trip_rows GROUP BY 1, 2
), raised AS (
    SELECT (raised_at AT TIME ZONE %(tz)s)::date AS day, org, count(*) AS alerts_raised
    FROM alerts
    WHERE status <> 'retracted'
      AND raised_at >= (%(first)s::date)::timestamp AT TIME ZONE %(tz)s
      AND raised_at < (%(last)s::date + 1)::timestamp AT TIME ZONE %(tz)s
    GROUP BY 1, 2
), closed AS (
    SELECT (e.at AT TIME ZONE %(tz)s)::date AS day, a.org, count(*) AS alerts_closed,
           array_agg(extract(epoch FROM e.at - a.raised_at)::float8) AS close_seconds
    FROM alert_events e JOIN alerts a USING (alert_id)
    WHERE e.to_status = 'closed' AND a.status = 'closed'
      AND e.at >= (%(first)s::date)::timestamp AT TIME ZONE %(tz)s
      AND e.at < (%(last)s::date + 1)::timestamp AT TIME ZONE %(tz)s
    GROUP BY 1, 2
), registered AS (
    SELECT org, count(*) AS vehicles FROM vehicles GROUP BY org
), keys AS (
    SELECT day, org FROM fixes UNION SELECT day, org FROM trip_sums
    UNION SELECT day, org FROM raised UNION SELECT day, org FROM closed
    UNION SELECT d.day, r.org FROM days d CROSS JOIN registered r
)
INSERT INTO kpi_daily (day, org, vehicles_registered, vehicles_reporting, fixes, trips, km_driven,
                       off_hours_trips, off_hours_km, alerts_raised, alerts_closed, close_seconds)
SELECT k.day, k.org, coalesce(r.vehicles, 0), coalesce(f.vehicles_reporting, 0), coalesce(f.fixes, 0),
       coalesce(t.trips, 0), coalesce(t.km_driven, 0), coalesce(t.off_hours_trips, 0),
       coalesce(t.off_hours_km, 0), coalesce(a.alerts_raised, 0), coalesce(c.alerts_closed, 0),
       coalesce(c.close_seconds, '{}')
FROM keys k
LEFT JOIN registered r ON r.org = k.org
LEFT JOIN fixes f ON (f.day, f.org) = (k.day, k.org)
LEFT JOIN trip_sums t ON (t.day, t.org) = (k.day, k.org)
LEFT JOIN raised a ON (a.day, a.org) = (k.day, k.org)
LEFT JOIN closed c ON (c.day, c.org) = (k.day, k.org)
"""


@dataclass(frozen=True, slots=True)
class RollupResult:
    first_day: date
    last_day: date
    rows: int


def refresh_kpi_daily(
    conn: psycopg.Connection[tuple[object, ...]],
    first_day: date,
    last_day: date,
    *,
    tz: str = TIME_ZONE,
) -> RollupResult:
    """Rebuild kpi_daily for ``first_day``..``last_day`` (inclusive) in one transaction."""
    if last_day < first_day:
        raise ValueError(f"rollup days: last day {last_day} is before first day {first_day}")
    params = {"first": first_day, "last": last_day, "tz": tz}
    with conn.transaction():
        conn.execute("DELETE FROM kpi_daily WHERE day BETWEEN %(first)s AND %(last)s", params)
        cur = conn.execute(_REFRESH_SQL, params)
        rows = max(cur.rowcount, 0)
    return RollupResult(first_day, last_day, rows)


def recent_days(
    conn: psycopg.Connection[tuple[object, ...]],
    days: int,
    *,
    tz: str = TIME_ZONE,
    now: datetime | None = None,
) -> tuple[date, date]:
    """(first, last) civil days of the ``days`` days up to today (or ``now``) in ``tz``."""
    if days < 1:
        raise ValueError(f"rollup days: {days} must be at least 1")
    row = conn.execute(
        "SELECT (coalesce(%s::timestamptz, now()) AT TIME ZONE %s)::date", (now, tz)
    ).fetchone()
    assert row is not None and isinstance(row[0], date)
    today: date = row[0]
    return date.fromordinal(today.toordinal() - days + 1), today
