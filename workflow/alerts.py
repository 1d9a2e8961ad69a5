"""Alert status changes by people: open -> acknowledged -> closed (and reopen), each with who and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from store import audit

Conn = psycopg.Connection[tuple[Any, ...]]

#: action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledged": (("open",), "acknowledged"),
    "closed": (("open", "acknowledged"), "closed"),
    "reopened": (("closed",), "open"),
}


class WorkflowError(ValueError):
    """A change that cannot be made (unknown alert, wrong status, missing reason)."""


@dataclass(frozen=True, slots=True)
class Change:
    alert_id: str
    from_status: str
    to_status: str
    actor: str
    at: datetime


def resolve_id(conn: Conn, prefix: str) -> str:
    """A full alert id from an unambiguous prefix (ids are long hashes; tables show 12 characters)."""
    rows = conn.execute(
        "SELECT alert_id FROM alerts WHERE alert_id LIKE %s ORDER BY alert_id LIMIT 2",
        (prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
    ).fetchall()
    if not rows:
        raise WorkflowError(f"no alert with id {prefix!r}")
    if len(rows) > 1:
        raise WorkflowError(f"alert id {prefix!r} is ambiguous (matches {rows[0][0]} and {rows[1][0]}, ...)")
    return str(rows[0][0])


def change_status(conn: Conn, alert_id: str, action: str, actor: str, reason: str | None = None) -> Change:
    """Apply ``action`` (acknowledged / closed / reopened) and record it in alert_events, atomically."""
    if action not in TRANSITIONS:
        raise WorkflowError(f"unknown action {action!r}")
    if not actor.strip():
        raise WorkflowError("who made the change (--by) is required")
    if action in ("closed", "reopened") and not (reason and reason.strip()):
        raise WorkflowError(f"{action}: --reason is required (what was found, what was done)")
    sources, target = TRANSITIONS[action]
    with conn.transaction():
        row = conn.execute(
            "SELECT status, org FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,)
        ).fetchone()
        if row is None:
            raise WorkflowError(f"no alert with id {alert_id!r}")
        status, org = str(row[0]), str(row[1])
        if status not in sources:
            raise WorkflowError(
                f"alert {alert_id[:12]} is {status}: {action} needs it {' or '.join(sources)}"
            )
        conn.execute(
            "UPDATE alerts SET status = %s, updated_at = now() WHERE alert_id = %s", (target, alert_id)
        )
        at = conn.execute(
            "INSERT INTO alert_events (alert_id, org, actor, kind, from_status, to_status, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING at",
            (alert_id, org, actor, action, status, target, reason),
        ).fetchone()
        audit.record(conn, actor=actor, action=f"alert.{action}", target=alert_id,
                     detail={"org": org, "from": status, "to": target, "reason": reason})
    assert at is not None
    return Change(alert_id, status, target, actor, at[0])
