"""Versioned SQL migrations with a checksum ledger: applied once, in order, never edited after."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LEDGER = "schema_migrations"
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
#: pg_advisory_xact_lock key: two `db migrate` runs at once apply each migration once.
_LOCK_KEY = 0x6677_0011


class MigrationError(RuntimeError):
    """The migrations on disk and the ledger disagree, or a migration failed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class MigrationState:
    version: int
    name: str
    #: applied | pending | edited (file changed after it was applied) | missing (no file)
    state: str
    applied_at: datetime | None
    checksum: str


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNNN_name.sql`` in ``directory``, by version; a stray or duplicate name is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _NAME_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is also {found[version].path.name}")
        found[version] = Migration(version, match.group(2), path, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _ensure_ledger(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {LEDGER} (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            checksum    text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now(),
            applied_by  text NOT NULL DEFAULT current_user
        )"""
    )


def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, tuple[str, str, datetime]]:
    rows = conn.execute(f"SELECT version, name, checksum, applied_at FROM {LEDGER}").fetchall()
    return {int(str(v)): (str(n), str(c), a) for v, n, c, a in rows if isinstance(a, datetime)}


def migration_status(
    conn: psycopg.Connection[tuple[object, ...]], directory: Path = MIGRATIONS_DIR
) -> list[MigrationState]:
    """Each migration on disk or in the ledger with its state (read-only apart from creating the ledger)."""
    _ensure_ledger(conn)
    states = _states(conn, directory)
    conn.commit()
    return states


def check_ledger(states: list[MigrationState]) -> None:
    """Refuse to go on when an applied migration was edited or deleted, or a gap would reorder history."""
    problems = []
    for s in states:
        if s.state == "edited":
            problems.append(
                f"{s.version:04d}_{s.name}: applied with checksum {s.checksum[:12]}…, "
                "but the file has changed since; write a new migration instead"
            )
        elif s.state == "missing":
            problems.append(f"{s.version:04d}_{s.name}: applied, but its file is gone")
    last_applied = max((s.version for s in states if s.state != "pending"), default=0)
    for s in states:
        if s.state == "pending" and s.version < last_applied:
            problems.append(
                f"{s.version:04d}_{s.name}: pending, but a later migration ({last_applied:04d}) "
                "is already applied; renumber it after the last one"
            )
    if problems:
        raise MigrationError("migrations refused:\n  " + "\n  ".join(problems))


def migrate(
    conn: psycopg.Connection[tuple[object, ...]], directory: Path = MIGRATIONS_DIR
) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return those applied.

    The whole run holds an advisory lock, and the ledger is re-checked under it, so concurrent
    runs neither apply a migration twice nor apply anything over an edited history.
    """
    _ensure_ledger(conn)
    conn.commit()
    done: list[Migration] = []
    for migration in discover(directory):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            check_ledger(_states(conn, directory))
            if migration.version in _applied(conn):
                continue
            try:
                conn.execute(migration.sql.encode("utf-8"))
            except psycopg.Error as exc:
                raise MigrationError(f"{migration.path.name} failed: {exc}") from exc
            conn.execute(
                f"INSERT INTO {LEDGER} (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        done.append(migration)
    return done


def _states(conn: psycopg.Connection[tuple[object, ...]], directory: Path) -> list[MigrationState]:
    applied = _applied(conn)
    on_disk = {m.version: m for m in discover(directory)}
    states = []
    for version in sorted({*on_disk, *applied}):
        m = on_disk.get(version)
        if version not in applied:
            assert m is not None
            states.append(MigrationState(version, m.name, "pending", None, m.checksum))
        else:
            name, checksum, at = applied[version]
            state = "missing" if m is None else ("applied" if m.checksum == checksum else "edited")
            states.append(MigrationState(version, name, state, at, checksum))
    return states
