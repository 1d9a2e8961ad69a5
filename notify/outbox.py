"""The delivery log as an outbox: alert changes become rows (deduplicated), rows are sent with retries.

A row is written before anything is sent, keyed by (alert, revision, route, purpose): an alert that
arrives twice, or a notifier restarted after a crash, finds its row and adds nothing. Sending takes
one row at a time under ``FOR UPDATE SKIP LOCKED`` (several notifiers never send the same row) and
records every attempt. A crash between a receiver's answer and the row's update can repeat that
one message: at-least-once, the receivers get the delivery id to drop it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from fleetwatch.records import Alert, Severity
from fleetwatch.settings import Settings
from notify.channels import Channel, DeliveryError
from notify.config import SEVERITY_RANK, Route, Routing
from notify.message import Notice
from notify.ratelimit import TokenBucket

log = logging.getLogger(__name__)
Conn = psycopg.Connection[tuple[Any, ...]]


def alert_payload(alert: Alert, revision: int) -> dict[str, Any]:
    """The facts a notice carries (an alert without a severity is yellow, as before v1 had one)."""
    payload = alert.to_dict()
    payload.pop("v", None)
    payload.pop("status", None)
    payload.update(severity=(alert.severity or Severity.YELLOW).value, revision=revision)
    return payload


def ancestors(conn: Conn, org: str) -> tuple[str, ...]:
    """The org's parent, grandparent, ... from the registry (empty for an unknown org)."""
    rows = conn.execute(
        "WITH RECURSIVE up (org_id, parent_id, depth) AS ("
        " SELECT org_id, parent_id, 0 FROM orgs WHERE org_id = %s"
        " UNION ALL SELECT o.org_id, o.parent_id, up.depth + 1 FROM orgs o JOIN up ON o.org_id = up.parent_id"
        " WHERE up.depth < 32) SELECT org_id FROM up WHERE depth > 0 ORDER BY depth",
        (org,),
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


def route_key(route: Route, channel: str) -> str:
    return f"{route.name}/{channel}"


def _insert(
    conn: Conn,
    routing: Routing,
    route: Route,
    channel: str,
    purpose: str,
    payload: dict[str, Any],
    now: datetime,
    tz: ZoneInfo,
) -> bool:
    """One delivery row (held through the route's quiet hours); False if it already existed."""
    quiet = route.quiet_hours
    release = quiet.release_at(now, tz) if quiet else None
    if release is not None and quiet is not None and quiet.except_red and payload["severity"] == "red":
        release = None
    row = conn.execute(
        "INSERT INTO notify_deliveries (alert_id, revision, route, channel_type, purpose, org, severity,"
        " payload, status, created_at, next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT ON CONSTRAINT notify_deliveries_once DO NOTHING RETURNING delivery_id",
        (payload["alert_id"], int(payload["revision"]), route_key(route, channel),
         routing.channels[channel].type, purpose, route.org, payload["severity"], Jsonb(payload),
         "held" if release else "pending", now, release or now),
    ).fetchone()  # fmt: skip
    return row is not None


def enqueue_upsert(conn: Conn, routing: Routing, payload: dict[str, Any], now: datetime, tz: ZoneInfo) -> int:
    """Rows for an alert's first notice on each route, or for its severity going up; the count made."""
    made = 0
    org = str(payload["org"])
    for route in routing.for_org(org, ancestors(conn, org)):
        if not route.wants(payload["severity"]):
            continue
        for channel in route.channels:
            earlier = conn.execute(
                "SELECT max(CASE severity WHEN 'red' THEN 2 ELSE 1 END) FROM notify_deliveries"
                " WHERE alert_id = %s AND route = %s AND purpose = 'alert'",
                (payload["alert_id"], route_key(route, channel)),
            ).fetchone()
            if earlier and earlier[0] is not None and earlier[0] >= SEVERITY_RANK[payload["severity"]]:
                continue  # already told (a later revision only extends it)
            made += _insert(conn, routing, route, channel, "alert", payload, now, tz)
    return made


def enqueue_retraction(
    conn: Conn,
    routing: Routing,
    alert_id: str,
    revision: int,
    reason: str | None,
    now: datetime,
    tz: ZoneInfo,
) -> int:
    """Cancel what was not sent yet; tell the routes that were told. Returns the rows made."""
    conn.execute(
        "UPDATE notify_deliveries SET status = 'cancelled', last_error = %s"
        " WHERE alert_id = %s AND purpose = 'alert' AND status IN ('pending', 'held')",
        (f"alert retracted before delivery: {reason or 'no reason given'}", alert_id),
    )
    told = conn.execute(
        "SELECT DISTINCT ON (route) route, payload FROM notify_deliveries"
        " WHERE alert_id = %s AND purpose = 'alert' AND status = 'sent' ORDER BY route, revision DESC",
        (alert_id,),
    ).fetchall()
    routes = {r.name: r for r in routing.routes}
    made = 0
    for key, payload in told:
        route_name, channel = str(key).split("/", 1)
        route = routes.get(route_name)
        if route is None or channel not in routing.channels:
            continue
        payload = {**payload, "revision": revision, "retract_reason": reason}
        made += _insert(conn, routing, route, channel, "retraction", payload, now, tz)
    return made


def enqueue_escalation(
    conn: Conn, routing: Routing, payload: dict[str, Any], parent_org: str, now: datetime, tz: ZoneInfo
) -> int:
    payload = {**payload, "escalated_to": parent_org}
    made = 0
    for route in routing.for_escalation(parent_org):
        for channel in route.channels:
            made += _insert(conn, routing, route, channel, "escalation", payload, now, tz)
    return made


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    throttled: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Dispatcher:
    """Sends due rows through their channels: retries with backoff, a rate limit per channel."""

    settings: Settings
    routing: Routing
    channels: dict[str, Channel]
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, spec in self.routing.channels.items():
            self.buckets.setdefault(name, TokenBucket(spec.rate_per_minute))

    def backoff(self, attempts: int) -> timedelta:
        s = self.settings
        return timedelta(
            seconds=min(s.notify_backoff_seconds * 2 ** (attempts - 1), s.notify_backoff_max_seconds)
        )

    def dispatch_due(self, conn: Conn, now: datetime, limit: int = 500) -> DispatchStats:
        """Send every row due at ``now`` (each in its own transaction) until none is left or all throttle."""
        stats = DispatchStats()
        throttled: set[str] = set()
        # Only this routing file's routes: rows of routes it does not know (another notifier's, or a
        # route since removed) stay as they are, visible in `fleetwatch notify log`.
        keys = {route_key(r, c): (r, c) for r in self.routing.routes for c in r.channels}
        for _ in range(limit):
            with conn.transaction():
                row = conn.execute(
                    "SELECT delivery_id, route, purpose, payload, attempts FROM notify_deliveries"
                    " WHERE status IN ('pending', 'held') AND next_attempt_at <= %s"
                    " AND route = ANY (%s)"
                    " ORDER BY next_attempt_at, delivery_id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (now, [k for k, (_, c) in keys.items() if c not in throttled]),
                ).fetchone()
                if row is None:
                    break
                delivery_id, key, purpose, payload, attempts = row
                route, channel_name = keys[str(key)]
                channel = self.channels[channel_name]
                if not self.buckets[channel_name].try_take():
                    throttled.add(channel_name)
                    continue
                attempts += 1
                try:
                    channel.send(Notice(int(delivery_id), str(key), str(purpose), payload), route)
                except (DeliveryError, OSError) as exc:
                    error = f"{type(exc).__name__}: {exc}"[:1000]
                    gave_up = attempts >= self.settings.notify_max_attempts
                    conn.execute(
                        "UPDATE notify_deliveries SET attempts = %s, last_error = %s, status = %s,"
                        " next_attempt_at = %s WHERE delivery_id = %s",
                        (
                            attempts,
                            error,
                            "failed" if gave_up else "pending",
                            now + self.backoff(attempts),
                            delivery_id,
                        ),
                    )
                    stats.failed += gave_up
                    stats.retried += not gave_up
                    stats.errors.append(f"{key} #{delivery_id}: {error}")
                    log.warning(
                        "delivery %s on %s failed (attempt %d): %s", delivery_id, key, attempts, error
                    )
                    continue
                conn.execute(
                    "UPDATE notify_deliveries SET attempts = %s, status = 'sent', sent_at = now()"
                    " WHERE delivery_id = %s",
                    (attempts, delivery_id),
                )
                stats.sent += 1
        stats.throttled = len(throttled)
        return stats

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
