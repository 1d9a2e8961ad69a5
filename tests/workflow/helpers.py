"""A red off-hours alert raised a day ago in an org of its own: what workflow and audit tests act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleetwatch.settings import Settings
from store.db import connect


def seed_alert(settings: Settings, org: str, plate: str) -> str:
    """Insert the org and an open alert of ``plate`` in it; returns the alert id."""
    alert_id = org + "0" * 20
    raised = datetime.now(UTC) - timedelta(days=1)
    with connect(settings) as conn:
        conn.execute("INSERT INTO orgs (org_id, name) VALUES (%s, %s)", (org, org))
        conn.execute(
            "INSERT INTO alerts (alert_id, type, severity, vehicle_id, org, start_at, lat, lon, raised_at,"
            " due_at, revision) VALUES (%s, 'off_hours', 'red', %s, %s, %s, 32.0, 118.8, %s, %s, 1)",
            (alert_id, plate, org, raised, raised, raised + timedelta(days=3)),
        )
    return alert_id
