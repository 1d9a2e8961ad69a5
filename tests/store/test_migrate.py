"""Migrations: discovery rules (unit) and the checksum ledger against the real database (integration)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fleetwatch.settings import Settings
from store.db import connect
from store.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate, migration_status


def test_the_shipped_migrations_are_numbered_without_gaps() -> None:
    found = discover()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert all(m.path.parent == MIGRATIONS_DIR for m in found)


def test_a_badly_named_or_duplicate_migration_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "2_second.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"2_second\.sql: migration files are named"):
        discover(tmp_path)
    (tmp_path / "2_second.sql").unlink()
    (tmp_path / "0001_again.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="version 1 is also"):
        discover(tmp_path)


@pytest.fixture
def scratch(database: Settings, unique: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection whose search_path is a fresh schema, so the ledger and tables are private."""
    schema = f"fw_test_{unique}"
    with connect(database) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.commit()
        yield conn
        conn.rollback()
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.commit()


@pytest.mark.integration
def test_ledger_applies_once_refuses_an_edited_migration_and_a_late_inserted_one(
    scratch: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    first = tmp_path / "0001_things.sql"
    first.write_text("CREATE TABLE things (id int PRIMARY KEY);")
    (tmp_path / "0003_more.sql").write_text("ALTER TABLE things ADD COLUMN name text;")

    assert [m.label for m in migrate(scratch, tmp_path)] == ["0001_things", "0003_more"]
    assert migrate(scratch, tmp_path) == []  # idempotent
    assert [s.state for s in migration_status(scratch, tmp_path)] == ["applied", "applied"]

    first.write_text("CREATE TABLE things (id bigint PRIMARY KEY);")  # edited after it was applied
    assert [s.state for s in migration_status(scratch, tmp_path)] == ["edited", "applied"]
    with pytest.raises(MigrationError, match=r"0001_things: applied with checksum .* the file has changed"):
        migrate(scratch, tmp_path)
    first.write_text("CREATE TABLE things (id int PRIMARY KEY);")

    (tmp_path / "0002_between.sql").write_text("SELECT 1;")  # numbered before an applied one
    with pytest.raises(MigrationError, match="0002_between: pending, but a later migration"):
        migrate(scratch, tmp_path)
    (tmp_path / "0002_between.sql").unlink()

    first.unlink()
    with pytest.raises(MigrationError, match="0001_things: applied, but its file is gone"):
        migrate(scratch, tmp_path)


@pytest.mark.integration
def test_a_failing_migration_is_rolled_back_and_not_recorded(
    scratch: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half (id int); SELECT * FROM no_such_table;")
    with pytest.raises(MigrationError, match=r'0002_broken\.sql failed: relation "no_such_table" does not'):
        migrate(scratch, tmp_path)
    scratch.rollback()
    assert [s.state for s in migration_status(scratch, tmp_path)] == ["applied", "pending"]
    assert scratch.execute("SELECT to_regclass('half')").fetchone() == (None,)
