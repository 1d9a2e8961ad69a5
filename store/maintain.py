"""Scheduled upkeep the Apache edition has no policy jobs for: drop expired position chunks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from store.roles import SCOPED


@dataclass(frozen=True, slots=True)
class RetentionResult:
    table: str
    older_than: datetime
    dropped_chunks: list[str]
    sealed_chunks: int = 0


def drop_expired_positions(
    conn: psycopg.Connection[tuple[object, ...]], retention_days: int, *, now: datetime | None = None
) -> RetentionResult:
    """Drop every positions chunk whose whole range is older than ``retention_days`` (by fix time).

    Whole chunks only (TimescaleDB's `drop_chunks`): a chunk straddling the cut-off stays until
    it is entirely expired, so at most one chunk interval (1 day) more than N days is kept.
    """
    if retention_days < 1:
        raise ValueError(f"positions_retention_days: {retention_days} must be at least 1")
    row = conn.execute(
        "SELECT coalesce(%s::timestamptz, now()) - make_interval(days => %s)", (now, retention_days)
    ).fetchone()
    assert row is not None and isinstance(row[0], datetime)
    cutoff = row[0]
    with conn.transaction():
        dropped = conn.execute(
            "SELECT drop_chunks('positions', older_than => %s::timestamptz)", (cutoff,)
        ).fetchall()
        sealed = seal_chunks(conn, "positions")
    return RetentionResult("positions", cutoff, [str(r[0]) for r in dropped], sealed)


def seal_chunks(conn: psycopg.Connection[tuple[object, ...]], table: str) -> int:
    """Revoke the scoped roles' privileges on every chunk of ``table``; return how many chunks.

    Chunks have no row-level security, so a scoped role must never hold a privilege on one (queries
    through the hypertable need none). Migration 0002 already avoids the grant being copied; this
    keeps it true whatever a later GRANT on the hypertable propagated to existing chunks.
    """
    chunks = conn.execute("SELECT show_chunks(%s)", (table,)).fetchall()
    for (chunk,) in chunks:
        revoke = sql.SQL("REVOKE ALL ON TABLE {} FROM {}")
        conn.execute(revoke.format(sql.SQL(str(chunk)), sql.Identifier(SCOPED)))
    return len(chunks)


def chunk_ranges(conn: psycopg.Connection[tuple[object, ...]], table: str) -> list[tuple[datetime, datetime]]:
    """(start, end) of every chunk of a hypertable, oldest first."""
    rows = conn.execute(
        "SELECT range_start, range_end FROM timescaledb_information.chunks "
        "WHERE hypertable_name = %s ORDER BY range_start",
        (table,),
    ).fetchall()
    conn.commit()
    return [(s, e) for s, e in rows if isinstance(s, datetime) and isinstance(e, datetime)]
