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
from fleetwatch.records import ContractError, parse_alert
from sink.base import Record, Row, StagedSink, value_of
from sink.envelope import check_id, open_envelope

SEVERITIES = ("yellow", "red")
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
        env = open_envelope(value_of(record), "alert")
        tail = (env.revision, env.reason, env.order_id, env.retracted, env.record is not None, record.offset)
        if env.record is None:
            return (env.id, *([None] * len(_FACTS)), *tail)
        body = dict(env.record)
        severity = body.pop("severity", "yellow")
        if severity not in SEVERITIES:
            raise ContractError("bad_value", "severity", severity, f"must be one of: {', '.join(SEVERITIES)}")
        body.pop("due", None)  # derived from raised_at by the record itself
        alert = parse_alert(body)
        check_id(env, alert.alert_id)
        return (
            alert.alert_id, alert.type.value, severity, alert.vehicle_id, alert.org, alert.start, alert.end,
            alert.lat, alert.lon, alert.raised_at, alert.due, Jsonb(alert.details), alert.trip_id, *tail,
        )  # fmt: skip
