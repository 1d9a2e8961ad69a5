"""Alert changes (upserts and retractions) -> alerts; each applied revision -> alert_events.

Detection owns an alert's facts (span, position, details); the managers' workflow owns its
status (open -> acknowledged -> closed), which a detection update never resets. A retraction
sets status ``retracted`` and keeps the row (with the reason and any exempting order); a later
revision that re-raises it reopens it. Several revisions of one alert inside one batch collapse
to the newest, which gets the event.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.types.json import Jsonb

from fleetwatch import topics
from fleetwatch.records import Severity, parse_change
from sink.base import Record, Row, StagedSink, value_of

_FACTS = ("type", "severity", "vehicle_id", "org", "start_at", "end_at", "lat", "lon", "raised_at", "due_at",
          "details", "trip_id")  # fmt: skip
_RETRACTION = ("revision", "retract_reason", "retract_order_id")


@dataclass
class AlertsSink(StagedSink):
    topic: str = topics.ALERTS
    table = "alerts"
    columns = (
        ("alert_id", "text"), ("type", "text"), ("severity", "text"), ("vehicle_id", "text"), ("org", "text"),
        ("start_at", "timestamptz"), ("end_at", "timestamptz"), ("lat", "float8"), ("lon", "float8"),
        ("raised_at", "timestamptz"), ("due_at", "timestamptz"), ("details", "jsonb"), ("trip_id", "text"),
        ("revision", "bigint"), ("retract_reason", "text"), ("retract_order_id", "text"),
        ("retracted", "bool"), ("has_record", "bool"), ("kafka_offset", "bigint"),
    )  # fmt: skip
    # One statement: every CTE sees the rows as they were before it, so `before` is the old status.
    merge_sql = f"""
        WITH latest AS (
            SELECT DISTINCT ON (alert_id) * FROM {{stage}} ORDER BY alert_id, revision DESC, kafka_offset DESC
        ), before AS (
            SELECT a.alert_id, a.status FROM alerts a JOIN latest l USING (alert_id)
        ), upserted AS (
            INSERT INTO alerts (alert_id, {", ".join(_FACTS)}, {", ".join(_RETRACTION)}, status)
            SELECT alert_id, {", ".join(_FACTS)}, {", ".join(_RETRACTION)},
                   CASE WHEN retracted THEN 'retracted' ELSE 'open' END
            FROM latest WHERE has_record
            ON CONFLICT (alert_id) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in (*_FACTS, *_RETRACTION))},
                status = CASE WHEN EXCLUDED.status = 'retracted' THEN 'retracted'
                              WHEN alerts.status = 'retracted' THEN 'open'
                              ELSE alerts.status END,
                updated_at = now()
            WHERE EXCLUDED.revision >= alerts.revision
            RETURNING alert_id, org, status, revision, retract_reason, (xmax = 0) AS inserted
        ), bare_retractions AS (
            UPDATE alerts a SET status = 'retracted', revision = l.revision,
                                retract_reason = l.retract_reason, retract_order_id = l.retract_order_id,
                                updated_at = now()
            FROM latest l WHERE NOT l.has_record AND a.alert_id = l.alert_id AND l.revision >= a.revision
            RETURNING a.alert_id, a.org, a.status, a.revision, a.retract_reason, false AS inserted
        ), applied AS (
            SELECT * FROM upserted UNION ALL SELECT * FROM bare_retractions
        )
        INSERT INTO alert_events (alert_id, org, actor, kind, from_status, to_status, reason, revision)
        SELECT a.alert_id, a.org, 'detection',
               CASE WHEN a.status = 'retracted' THEN 'retracted'
                    WHEN a.inserted THEN 'raised'
                    WHEN b.status = 'retracted' THEN 'reraised'
                    ELSE 'updated' END,
               b.status, a.status, a.retract_reason, a.revision
        FROM applied a LEFT JOIN before b USING (alert_id)
        ON CONFLICT ON CONSTRAINT alert_events_revision DO NOTHING
    """

    def decode(self, record: Record) -> Row:
        change = parse_change(value_of(record), "alert")
        tail = (change.revision, change.reason, change.order_id, change.retracted, change.record is not None,
                record.offset)  # fmt: skip
        alert = change.alert
        if alert is None:
            return (change.id, *([None] * len(_FACTS)), *tail)
        severity = alert.severity or Severity.YELLOW  # alerts written before v1 had severity
        return (
            alert.alert_id, alert.type.value, severity.value, alert.vehicle_id, alert.org, alert.start,
            alert.end, alert.lat, alert.lon, alert.raised_at, alert.due, Jsonb(alert.details), alert.trip_id,
            *tail,
        )  # fmt: skip
