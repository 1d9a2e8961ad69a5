"""Retention: `db maintain` drops whole positions chunks older than N days and nothing newer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetwatch.settings import Settings
from store.db import connect
from store.maintain import chunk_ranges, drop_expired_positions


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positions_retention_days: 0 must be at least 1"):
        drop_expired_positions(None, 0)  # type: ignore[arg-type]


def test_default_retention_is_180_days(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().positions_retention_days == 180
    monkeypatch.setenv("FLEETWATCH_POSITIONS_RETENTION_DAYS", "30")
    assert Settings().positions_retention_days == 30


@pytest.mark.integration
def test_expired_chunks_are_dropped_and_younger_ones_kept(database: Settings, unique: str) -> None:
    # Year 2001, far from any other test's data, with the clock set to the end of that year.
    now = datetime(2001, 12, 31, tzinfo=UTC)
    days = [datetime(2001, 1, 10, 12, tzinfo=UTC), datetime(2001, 6, 1, 12, tzinfo=UTC),
            datetime(2001, 12, 20, 12, tzinfo=UTC)]  # fmt: skip
    device = f"ret-{unique}"
    with connect(database) as conn:
        with conn.transaction():
            for ts in days:
                conn.execute(
                    "INSERT INTO positions (ts, vehicle_id, device_id, org, seq, lat, lon, speed_kmh, "
                    "heading, ignition, received_at) "
                    "VALUES (%s, 'R', %s, 'unregistered', 1, 32, 118, 0, 0, false, now())",
                    (ts, device),
                )
        result = drop_expired_positions(conn, 180, now=now)
        left = conn.execute("SELECT ts FROM positions WHERE device_id = %s", (device,)).fetchall()
        ranges = chunk_ranges(conn, "positions")
    assert result.older_than == datetime(2001, 7, 4, tzinfo=UTC)
    assert len(result.dropped_chunks) >= 2
    assert [ts for (ts,) in left] == [days[2]]
    assert all(end > result.older_than for _, end in ranges)  # no expired chunk survives
