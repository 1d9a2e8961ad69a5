"""The sink loop: Kafka batches -> one database transaction -> dead letters -> offsets committed.

Order of effects per batch, which is what makes it at-least-once with idempotent writes:
1. decode every record (a contract failure becomes a dead letter, never a stall);
2. write all rows in ONE transaction (each sink's own way: COPY into staging and a merge on
   natural keys, newer revisions only; positions COPY straight into their table); if the
   database refuses a record (SQLSTATE class 22/23/54, or a value the driver cannot encode),
   the batch is written again in halves under savepoints, down to the refused records,
   which become dead letters;
3. send the dead letters and wait until Kafka has them;
4. commit the consumer offsets.
A crash anywhere before 4 re-reads the batch; writes and dead letters are then repeated, never lost.
While the database is unreachable (or refuses for a reason that is not about a record, e.g. a
missing table) the loop holds its batches (at most two: the one being written and the next,
already decoded), stops consuming and retries with backoff.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka.errors import KafkaError as AioKafkaError
from aiokafka.structs import TopicPartition
from kafka.errors import KafkaError

from fleetwatch import topics
from fleetwatch.kafka_io import make_producer
from fleetwatch.records import ContractError, DeadLetter, DeadLetterStage, Rejection
from fleetwatch.settings import Settings
from sink.base import Record, Row, TableSink
from sink.consumer import BlockingConsumer
from store.db import Login, connect

log = logging.getLogger("fleetwatch.sink")

#: SQLSTATE classes that are about one record's values: data exception, integrity constraint,
#: program limit (e.g. an index row too large). Anything else is about the database, not the record.
RECORD_SQLSTATE_CLASSES = ("22", "23", "54")
#: Allocations between the garbage collector's young-generation runs while the sink runs.
GC_GEN0_ALLOCATIONS = 100_000
#: While a batch is being written, how long one poll may wait before the loop looks at it again.
_POLL_SLICE_MS = 20


class DatabaseAway(Exception):
    """The database cannot take the batch right now (unreachable, shutting down, misconfigured)."""


@dataclass
class SinkStats:
    """What a run did; ``records_per_s`` covers first record to last commit (not the idle tail)."""

    records: int = 0
    batches: int = 0
    dead_lettered: int = 0
    db_outages: int = 0
    db_wait_s: float = 0.0
    commit_failures: int = 0
    #: monotonic time the first records arrived and the last batch was committed (throughput).
    first_record_at: float | None = None
    last_commit_at: float | None = None
    changed: Counter[str] = field(default_factory=Counter)
    consumed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def records_per_s(self) -> float:
        if self.first_record_at is None or self.last_commit_at is None:
            return 0.0
        return self.records / max(self.last_commit_at - self.first_record_at, 1e-9)


def is_record_error(exc: BaseException) -> bool:
    """True when the database (or the driver, encoding a value) refused a record's values."""
    if isinstance(exc, psycopg.DataError) and exc.sqlstate is None:
        return True  # the driver refused a value (e.g. a NUL in text) before sending it
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        return state is not None and state[:2] in RECORD_SQLSTATE_CLASSES
    return isinstance(exc, OverflowError | ValueError | TypeError)


Items = list[tuple[Record, Row]]
Stored = tuple[Counter[str], list["Refused"]]


@dataclass(frozen=True, slots=True)
class Refused:
    """A record the sink will dead-letter, why, and the SQLSTATE when the database refused it."""

    record: Record
    table: str
    rejection: Rejection
    sqlstate: str | None = None

    def letter(self, instance: str, now: datetime) -> DeadLetter:
        extra: dict[str, Any] = {"table": self.table}
        if self.sqlstate is not None:
            extra["sqlstate"] = self.sqlstate
        return DeadLetter.of(
            self.rejection,
            payload=self.record.value or b"",
            source_topic=self.record.topic,
            source_partition=self.record.partition,
            source_offset=self.record.offset,
            received_at=now,
            stage=DeadLetterStage.SINK,
            instance=instance,
            extra=extra,
        )


@dataclass
class _Batch:
    records: list[Record]
    items: dict[str, Items] = field(default_factory=dict)
    dead: list[Refused] = field(default_factory=list)
    future: Future[Stored] | None = None


class SinkRunner:
    """Runs a set of table sinks as one consumer-group member (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[TableSink],
        *,
        group: str | None = None,
        dlq_topic: str = topics.SINK_DLQ,
        login: Login = "sink",
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.by_topic = {s.topic: s for s in self.sinks}
        if len(self.by_topic) != len(self.sinks):
            raise ValueError("two sinks read the same topic")
        self.group = group or settings.sink_group
        self.dlq_topic = dlq_topic
        self.login = login
        self.stop = stop or threading.Event()
        self.stats = SinkStats()
        self._conn: psycopg.Connection[Any] | None = None
        self._consumer = BlockingConsumer(
            settings,
            group_id=self.group,
            topics=tuple(self.by_topic),
            client_id=f"fleetwatch-sink-{self.group}",
            # The loop stops polling while the database is away; stay in the group for 10 min.
            max_poll_interval_ms=600_000,
        )
        self._producer = make_producer(settings, client_id=f"fleetwatch-sink-{self.group}-dlq", role="sink")
        # The one thread that talks to the database (and owns the connection).
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-db")

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self, *, idle_exit_s: float | None = None, progress_every_s: float = 10.0) -> SinkStats:
        """Consume until ``stop`` is set (or, with ``idle_exit_s``, until nothing came for that long).

        Two batches are in hand at most: while the database thread writes batch k, this thread
        fetches and decodes batch k+1 (Python decoding and the server's writing overlap). Once
        batch k is committed in the database, batch k+1 is handed over and batch k's dead
        letters and offsets are settled while the database writes k+1 (a crash before k's
        offsets are committed re-reads both batches; writes are idempotent).
        """
        last_record = last_progress = time.monotonic()
        in_db: _Batch | None = None
        # Two batches in hand keep ~100k objects alive (records, rows, timestamps). With the
        # default threshold (700 allocations) the collector runs every ~100 records and its older
        # generations keep re-traversing them: about half the decoding CPU (measured). Records
        # and rows hold no cycles (reference counting frees them), so collect far less often.
        gc_threshold = gc.get_threshold()
        gc.set_threshold(GC_GEN0_ALLOCATIONS, *gc_threshold[1:])
        try:
            while not self.stop.is_set():
                batch = self._collect(in_db)
                now = time.monotonic()
                decoded = self._decode(batch) if batch else None
                committed = self._committed(in_db) if in_db is not None else None
                if decoded is not None:
                    decoded.future = self._db_thread.submit(self._store, decoded.items)
                    last_record = now
                if in_db is not None and committed is not None:
                    self._settle(in_db, committed)
                in_db = decoded
                if decoded is None and idle_exit_s is not None and now - last_record >= idle_exit_s:
                    break
                if progress_every_s and now - last_progress >= progress_every_s:
                    last_progress = now
                    self._log_progress()
            if in_db is not None:
                self._settle(in_db, self._committed(in_db))
        finally:
            gc.set_threshold(*gc_threshold)
            self.close()
        return self.stats

    def close(self) -> None:
        self._db_thread.shutdown(wait=True)
        self._consumer.close()
        self._producer.close(timeout=10)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _log_progress(self) -> None:
        s = self.stats
        log.info(
            "sink: %d records in %d batches, rows changed %s, dead letters %d, db outages %d (%.0f s)",
            s.records,
            s.batches,
            dict(s.changed),
            s.dead_lettered,
            s.db_outages,
            s.db_wait_s,
        )

    # -- one batch ---------------------------------------------------------------------------

    def _collect(self, in_db: _Batch | None) -> list[Record]:
        """Up to ``sink_batch_records`` records, waiting at most ``sink_batch_wait_ms`` for them;
        with nothing come yet, only until the batch in the database is committed, so that its
        offsets are settled then, not after an empty batch window."""
        wanted = self.settings.sink_batch_records
        deadline = time.monotonic() + self.settings.sink_batch_wait_ms / 1000.0
        pending = in_db.future if in_db is not None else None
        records: list[Record] = []
        while len(records) < wanted and not self.stop.is_set():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or (not records and pending is not None and pending.done()):
                break
            if pending is not None and not pending.done():
                remaining_ms = min(remaining_ms, _POLL_SLICE_MS)  # look at the database again soon
            polled = self._consumer.poll(timeout_ms=remaining_ms, max_records=wanted - len(records))
            for part in polled.values():
                records.extend(part)
        if records and self.stats.first_record_at is None:
            self.stats.first_record_at = time.monotonic()
        return records

    def _decode(self, batch: list[Record]) -> _Batch:
        decoded = _Batch(batch)
        for record in batch:
            sink = self.by_topic[record.topic]
            self.stats.consumed[sink.table] += 1
            try:
                decoded.items.setdefault(sink.table, []).append((record, sink.decode(record)))
            except ContractError as exc:
                decoded.dead.append(Refused(record, sink.table, Rejection.from_contract(exc)))
        return decoded

    @staticmethod
    def _committed(batch: _Batch) -> Stored:
        """Wait until the batch is committed in the database (or the write failed for good)."""
        assert batch.future is not None
        return batch.future.result()

    def _settle(self, batch: _Batch, committed: Stored) -> None:
        """After the batch's database commit: its dead letters, then its offsets (in that order)."""
        changed, refused = committed
        dead = batch.dead + refused
        self._send_dead_letters(dead)
        self._commit(batch.records)
        self.stats.records += len(batch.records)
        self.stats.batches += 1
        self.stats.changed.update(changed)
        self.stats.dead_lettered += len(dead)
        self.stats.rejected.update(refused.rejection.code for refused in dead)
        self.stats.last_commit_at = time.monotonic()

    def _store(self, items: dict[str, Items]) -> Stored:
        """Write the batch, waiting out database outages; return rows changed per table and refusals."""
        delay = 0.2
        away_since: float | None = None
        while True:
            try:
                result = self._write(self._connection(), items)
            except DatabaseAway as exc:
                self._drop_connection()
                if self.stop.is_set():
                    raise
                if away_since is None:
                    away_since = time.monotonic()
                    self.stats.db_outages += 1
                    log.warning("database unavailable, sink paused (batch held, nothing committed): %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.sink_retry_max_seconds)
                continue
            if away_since is not None:
                waited = time.monotonic() - away_since
                self.stats.db_wait_s += waited
                log.warning("database back after %.1f s, sink resumed", waited)
            return result

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = connect(self.settings, self.login, connect_timeout=3)
            except psycopg.OperationalError as exc:
                raise DatabaseAway(str(exc).strip()) from exc
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(
        self, conn: psycopg.Connection[Any], items: dict[str, Items]
    ) -> Stored:
        changed: Counter[str] = Counter()
        try:
            with conn.transaction(), conn.cursor() as cur:
                for table, rows in items.items():
                    changed[table] += self._sink(table).write(cur, [row for _, row in rows])
            return changed, []
        except Exception as exc:
            self._raise_unless_record_error(conn, exc)
        return self._write_bisecting(conn, items)

    def _write_bisecting(self, conn: psycopg.Connection[Any], items: dict[str, Items]) -> Stored:
        """Write the batch again, halving any part the database refuses until the refused records
        stand alone: one bad record in N costs about 2·log2(N) writes, not N."""
        changed: Counter[str] = Counter()
        refused: list[Refused] = []
        with conn.transaction(), conn.cursor() as cur:
            for table, rows in items.items():
                sink = self._sink(table)
                parts = [rows]
                while parts:
                    part = parts.pop()
                    try:
                        with conn.transaction():  # a savepoint: a refused part leaves nothing
                            changed[table] += sink.write(cur, [row for _, row in part])
                    except Exception as exc:
                        self._raise_unless_record_error(conn, exc)
                        if len(part) == 1:
                            refused.append(_refusal(sink, part[0][0], exc))
                        else:
                            # Second half pushed first: the first half is written first, in order.
                            middle = len(part) // 2
                            parts += [part[middle:], part[:middle]]
        log.warning(
            "database refused %d record(s); the other %d were stored",
            len(refused),
            sum(len(r) for r in items.values()) - len(refused),
        )
        return changed, refused

    @staticmethod
    def _raise_unless_record_error(conn: psycopg.Connection[Any], exc: Exception) -> None:
        if conn.broken or conn.closed or not is_record_error(exc):
            if isinstance(exc, psycopg.Error):
                raise DatabaseAway(f"{type(exc).__name__}: {str(exc).strip()}") from exc
            raise exc

    def _sink(self, table: str) -> TableSink:
        return next(s for s in self.sinks if s.table == table)

    def _send_dead_letters(self, dead: list[Refused]) -> None:
        """Dead letters must be in Kafka before the offsets move past their records."""
        now = datetime.now(UTC)
        letters = [(refused.record.key, refused.letter(self.group, now)) for refused in dead]
        delay = 0.5
        while letters:
            try:
                futures = [self._producer.send(self.dlq_topic, key=k, value=d.to_json()) for k, d in letters]
                self._producer.flush(timeout=30)
                for future in futures:
                    future.get(timeout=30)
                for _, letter in letters:
                    log.info(
                        "dead letter: %s %s[%d]@%d: %s",
                        letter.extra["table"],
                        letter.source_topic,
                        letter.source_partition,
                        letter.source_offset,
                        letter.message,
                    )
                return
            except KafkaError as exc:
                if self.stop.is_set():
                    raise
                log.warning("dead-letter topic unavailable (%s); retrying", exc)
                time.sleep(delay)
                delay = min(delay * 2, self.settings.sink_retry_max_seconds)

    def _commit(self, batch: list[Record]) -> None:
        last: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            last[tp] = max(last.get(tp, -1), record.offset)
        try:
            self._consumer.commit({tp: off + 1 for tp, off in last.items()})
        except AioKafkaError as exc:
            # A rebalance moved partitions away (or Kafka is away): whoever reads them next re-reads
            # the batch, which is already in the database; writes are idempotent.
            self.stats.commit_failures += 1
            log.warning("offset commit failed, records will be re-read: %s", exc)


def _refusal(sink: TableSink, record: Record, exc: Exception) -> Refused:
    """Why the database refused a record: the contract's reason when the record breaks it
    (precise: field and value), else the database's own."""
    table = sink.table
    sqlstate = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    try:
        sink.check(record)
    except ContractError as contract:
        return Refused(record, table, Rejection.from_contract(contract), sqlstate)
    if isinstance(exc, psycopg.Error):
        primary = exc.diag.message_primary or str(exc).strip()
        column = exc.diag.column_name or exc.diag.constraint_name
        message = f"{table}: the database refused the record: {str(exc).strip()}"
        return Refused(record, table, Rejection("db_rejected", column, primary, message), sqlstate)
    message = f"{table}: a value cannot be stored in its column: {exc}"
    return Refused(record, table, Rejection("db_unencodable", None, str(exc) or type(exc).__name__, message))
