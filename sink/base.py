"""The one interface every table sink implements, and the staged COPY + merge they share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

import psycopg

from fleetwatch.records import ContractError

Row = tuple[Any, ...]


class Record(Protocol):
    """A consumed Kafka record (aiokafka's and kafka-python's both fit)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class TableSink(Protocol):
    """One Kafka topic into one table (quix-streams' ``Sink.write(batch)`` shape).

    ``decode`` turns a record into a row or raises `fleetwatch.records.ContractError` (the record
    then goes to the dead-letter topic); ``write`` stores rows inside the caller's transaction
    and returns how many rows changed. Writes must be idempotent: the runner may write a batch
    again after a crash or an outage. ``check`` runs the record's full contract and raises
    `ContractError`; the runner calls it only for a record the database refused, so the dead
    letter names the field and value (a sink whose ``decode`` leaves parsing to the database
    stays fast and still explains its refusals).
    """

    @property
    def topic(self) -> str: ...

    @property
    def table(self) -> str: ...

    def decode(self, record: Record) -> Row: ...

    def write(self, cur: psycopg.Cursor[Any], rows: Sequence[Row]) -> int: ...

    def check(self, record: Record) -> None: ...


def value_of(record: Record) -> bytes:
    """The record's bytes; a tombstone (no value) is a contract failure, not a crash."""
    if record.value is None:
        raise ContractError("missing_value", None, None, "record has no value (a tombstone?)")
    return record.value


def record_time(record: Record) -> datetime:
    """The Kafka record's timestamp (when the producer wrote it) as an aware datetime."""
    return datetime.fromtimestamp(record.timestamp / 1000.0, UTC)


def copy_rows(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[tuple[str, str]], rows: Iterable[Row]
) -> int:
    """Binary COPY of ``rows`` into ``table``'s ``columns`` ((name, type) pairs); return the rows copied."""
    names = ", ".join(name for name, _ in columns)
    with cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types([t for _, t in columns])
        for row in rows:
            copy.write_row(row)
    return max(cur.rowcount, 0)


@dataclass
class StagedSink:
    """COPY rows (binary) into a per-session temporary staging table, then one set-based merge.

    Subclasses give the staging columns with their types and the merge statement (which reads
    ``stage`` and must be idempotent: ``ON CONFLICT`` on the natural key, newer revisions only).
    """

    topic: str
    table: ClassVar[str]
    columns: ClassVar[tuple[tuple[str, str], ...]]
    merge_sql: ClassVar[str]

    def decode(self, record: Record) -> Row:
        raise NotImplementedError

    def check(self, record: Record) -> None:
        self.decode(record)

    @property
    def stage(self) -> str:
        return f"stage_{self.table}"

    def write(self, cur: psycopg.Cursor[Any], rows: Sequence[Row]) -> int:
        return self.write_staged(cur, rows, self.merge_sql)

    def write_staged(self, cur: psycopg.Cursor[Any], rows: Sequence[Row], merge_sql: str) -> int:
        """Stage ``rows`` and run ``merge_sql`` over ``{stage}``; return how many rows it changed."""
        if not rows:
            return 0
        # Temporary: private to this session, no WAL; created once per connection.
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} "
            f"({', '.join(f'{n} {t}' for n, t in self.columns)}) ON COMMIT DELETE ROWS"
        )
        copy_rows(cur, self.stage, self.columns, rows)
        cur.execute(merge_sql.format(stage=self.stage))
        changed = max(cur.rowcount, 0)
        # Emptied now, not only at commit: a retry in parts reuses the table in this transaction.
        cur.execute(f"TRUNCATE {self.stage}")
        return changed
