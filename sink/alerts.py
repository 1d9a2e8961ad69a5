"""Alerts (revisioned upserts and retractions) -> alerts, each applied revision -> alert_events.

Detection owns an alert's facts (span, position, details); the managers' workflow owns its
status (open -> acknowledged -> closed), which a detection update never resets. A retraction
sets status ``retracted`` and keeps the row; a later revision that re-raises it reopens it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka.consumer.fetcher import ConsumerRecord
from psycopg.types.json import Jsonb

from fleetwatch import topics
from fleetwatch.records import ContractError, parse_alert
from sink.base import Row, StagedSink
from sink.envelope import open_envelope

SEVERITIES = ("yellow", "red")


@dataclass
class AlertsSink(StagedSink):
    topic: str = topics.ALERTS
    table = "alerts"
    columns = (
        ("alert_id", "text"), ("type", "text"), ("severity", "text"), ("vehicle_id", "text"), ("org", "text"),
        ("start_at", "timestamptz"), ("end_at", "timestamptz"), ("lat", "float8"), ("lon", "float8"),
        ("raised_at", "timestamptz"), ("due_at", "timestamptz"), ("details", "jsonb"), ("trip_id", "text"),
        ("revision", "bigint"), ("retracted", "bool"), ("retract_reason", "text"),
    )  # fmt: skip
    # One statement: every CTE sees the rows as they were before it, so `before` is the old status.
    merge_sql = """
        WITH latest AS (
            SELECT DISTINCT ON (alert_id) * FROM {stage} ORDER BY alert_id, revision DESC
        ), before AS (
            SELECT a.alert_id, a.status FROM alerts a JOIN latest l USING (alert_id)
        ), applied AS (
            INSERT INTO alerts (alert_id, type, severity, vehicle_id, org, start_at, end_at, lat, lon,
                                raised_at, due_at, status, details, trip_id, revision, retract_reason)
            SELECT alert_id, type, severity, vehicle_id, org, start_at, end_at, lat, lon, raised_at, due_at,
                   CASE WHEN retracted THEN 'retracted' ELSE 'open' END, details, trip_id, revision,
                   retract_reason
            FROM latest
            ON CONFLICT (alert_id) DO UPDATE SET
                type = EXCLUDED.type, severity = EXCLUDED.severity, vehicle_id = EXCLUDED.vehicle_id,
                org = EXCLUDED.org, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,
                lat = EXCLUDED.lat, lon = EXCLUDED.lon, raised_at = EXCLUDED.raised_at,
                due_at = EXCLUDED.due_at, details = EXCLUDED.details, trip_id = EXCLUDED.trip_id,
                revision = EXCLUDED.revision, retract_reason = EXCLUDED.retract_reason,
                status = CASE WHEN EXCLUDED.status = 'retracted' THEN 'retracted'
                              WHEN alerts.status = 'retracted' THEN 'open'
                              ELSE alerts.status END,
                updated_at = now()
            WHERE EXCLUDED.revision > alerts.revision
            RETURNING alert_id, org, status, revision, retract_reason, (xmax = 0) AS inserted
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

    def decode(self, record: ConsumerRecord) -> Row:
        env = open_envelope(record.value)
        severity = env.body.pop("severity", "yellow")
        if severity not in SEVERITIES:
            raise ContractError("bad_value", "severity", severity, f"must be one of: {', '.join(SEVERITIES)}")
        env.body.pop("due", None)  # derived from raised_at; recomputed by the record
        alert = parse_alert(env.body)
        return (
            alert.alert_id, alert.type.value, severity, alert.vehicle_id, alert.org, alert.start, alert.end,
            alert.lat, alert.lon, alert.raised_at, alert.due, Jsonb(alert.details), alert.trip_id,
            env.revision, env.retracted, env.reason,
        )  # fmt: skip
