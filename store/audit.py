"""The audit log: one append-only row per evidence query / report and per workflow action."""

from __future__ import annotations

import socket
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def record(
    conn: psycopg.Connection[Any],
    *,
    actor: str,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append who (``actor``, and the database login) did what (``action`` on ``target``, with
    ``detail``), when, and from where (the client address the server sees, this host's name).

    Runs in the caller's transaction, so the row commits together with the action it describes
    (a rolled-back action leaves no row). No RETURNING: writers may append, not read the log.
    """
    conn.execute(
        "INSERT INTO audit_log (actor, action, target, detail, client_host) VALUES (%s, %s, %s, %s, %s)",
        (actor, action, target, Jsonb(detail or {}), socket.gethostname()),
    )
