"""Overdue alerts (still open or acknowledged at `due_at`) escalate once to the org above, via notify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fleetwatch.records import format_timestamp
from notify.config import Routing
from notify.outbox import Conn, enqueue_escalation

_FACTS = (
    "a.alert_id, a.type, a.severity, a.vehicle_id, a.org, a.start_at, a.end_at, a.lat, a.lon, a.raised_at,"
    " a.due_at, a.details, a.trip_id, a.revision, a.status, o.parent_id"
)


def payload_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
    (
        alert_id,
        type_,
        severity,
        vehicle_id,
        org,
        start,
        end,
        lat,
        lon,
        raised,
        due,
        details,
        trip_id,
        revision,
    ) = row[:14]
    return {
        "alert_id": alert_id,
        "type": type_,
        "severity": severity,
        "vehicle_id": vehicle_id,
        "org": org,
        "start": format_timestamp(start),
        "end": format_timestamp(end) if end else None,
        "lat": lat,
        "lon": lon,
        "raised_at": format_timestamp(raised),
        "due": format_timestamp(due),
        "details": details,
        "trip_id": trip_id,
        "revision": revision,
    }


@dataclass(frozen=True, slots=True)
class Escalation:
    alert_id: str
    org: str
    parent_org: str | None
    deliveries: int


def escalate_overdue(conn: Conn, routing: Routing, now: datetime, tz: ZoneInfo) -> list[Escalation]:
    """Escalate every alert overdue at ``now`` that never was; the event's unique index makes it once."""
    done: list[Escalation] = []
    with conn.transaction():
        rows = conn.execute(
            f"SELECT {_FACTS} FROM alerts a LEFT JOIN orgs o ON o.org_id = a.org"
            " WHERE a.status IN ('open', 'acknowledged') AND a.due_at <= %s"
            " AND NOT EXISTS (SELECT 1 FROM alert_events e"
            " WHERE e.alert_id = a.alert_id AND e.kind = 'escalated')"
            " ORDER BY a.due_at FOR UPDATE OF a SKIP LOCKED",
            (now,),
        ).fetchall()
        for row in rows:
            payload = payload_from_row(row)
            status, parent = row[14], row[15]
            reason = (
                f"overdue since {payload['due']}; escalated to {parent}"
                if parent
                else f"overdue since {payload['due']}; {payload['org']} has no org above it"
            )
            event = conn.execute(
                "INSERT INTO alert_events (alert_id, org, at, actor, kind, from_status, to_status, reason)"
                " VALUES (%s, %s, %s, 'notify', 'escalated', %s, %s, %s)"
                " ON CONFLICT (alert_id) WHERE kind = 'escalated' DO NOTHING RETURNING event_id",
                (payload["alert_id"], payload["org"], now, status, status, reason),
            ).fetchone()
            if event is None:
                continue
            made = enqueue_escalation(conn, routing, payload, parent, now, tz) if parent else 0
            done.append(Escalation(payload["alert_id"], payload["org"], parent, made))
    return done
