"""The sink killed with -9 mid-batch, and PostgreSQL stopped for 60 s mid-run: no row lost or doubled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.kafka_io import delete_topic, make_producer
from fleetwatch.records import Fix
from fleetwatch.settings import Settings
from fleetwatch.stack import StackError, down, ensure_up
from store.db import connect
from tests.sink.helpers import SinkProcess, fixes, position_counts, scratch_topic, wait_for

pytestmark = pytest.mark.integration


class SteadyProducer(threading.Thread):
    """Produces the given fixes (each 5th one twice: upstream redelivery) at a steady rate."""

    def __init__(self, settings: Settings, topic: str, to_send: list[Fix], rate_per_s: float) -> None:
        super().__init__(name="steady-producer", daemon=True)
        self.settings, self.topic, self.to_send, self.rate = settings, topic, to_send, rate_per_s
        self.sent = 0
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        producer = make_producer(self.settings, client_id="fw-test-steady")
        try:
            started = time.monotonic()
            for i, fix in enumerate(self.to_send):
                if self.stopped.is_set():
                    return
                value = fix.to_json()
                producer.send(self.topic, key=fix.key, value=value)
                if i % 5 == 0:
                    producer.send(self.topic, key=fix.key, value=value)
                self.sent += 1
                time.sleep(max(0.0, started + self.sent / self.rate - time.monotonic()))
            producer.flush(60)
        except BaseException as exc:
            self.error = exc
        finally:
            producer.close(10)

    def finish(self, timeout_s: float) -> None:
        self.join(timeout_s)
        if self.error is not None:
            raise self.error
        assert not self.is_alive(), "producer did not finish"


@pytest.fixture
def scratch(database: Settings, unique: str) -> Iterator[tuple[str, str]]:
    telemetry = scratch_topic(database, f"fw-test-resilience-{unique}", 6)
    dlq = scratch_topic(database, f"fw-test-resilience-dlq-{unique}", 1)
    yield telemetry, dlq
    delete_topic(database, telemetry)
    delete_topic(database, dlq)


def _start(
    database: Settings, topics: tuple[str, str], to_send: list[Fix], rate_per_s: float, log: Path, group: str
) -> tuple[SteadyProducer, SinkProcess]:
    producer = SteadyProducer(database, topics[0], to_send, rate_per_s)
    sink = SinkProcess(log, {"positions": topics[0]}, group, topics[1], FLEETWATCH_SINK_BATCH_RECORDS="2000")
    sink.start()
    producer.start()
    return producer, sink


def _bring_postgres_back(database: Settings, timeout_s: float = 90.0) -> None:
    """`stack up` until PostgreSQL listens again. The test ports sit in Linux's ephemeral range
    (32768-60999), so another process's outgoing connection can hold the port for a moment
    ("could not bind ... Address already in use"): retry rather than fail on that."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ensure_up(database)
            return
        except StackError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


def _kill_inside_a_transaction(database: Settings, sink: SinkProcess, timeout_s: float = 60.0) -> bool:
    """SIGKILL the sink the moment its database session has a transaction open (a batch copied
    or merged, not committed); True if it was caught that way, False if the time ran out."""
    # As the sink's own login: pg_stat_activity hides other roles' transaction details.
    probe = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fleetwatch-sink' "
             "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()")  # fmt: skip
    with connect(database, "sink", autocommit=True) as conn:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = conn.execute(probe).fetchone()
            if row is not None and int(str(row[0])) > 0:
                sink.kill9()
                return True
            time.sleep(0.001)
    sink.kill9()
    return False


def test_kill_9_mid_batch_and_restart_loses_and_doubles_nothing(
    database: Settings, unique: str, scratch: tuple[str, str], tmp_path: Path
) -> None:
    to_send = fixes(unique, vehicles=60, per_vehicle=500)  # 30,000 fixes (+6,000 redelivered) over ~30 s
    producer, sink = _start(database, scratch, to_send, 1000, tmp_path / "sink.log", f"g-{unique}")
    try:
        wait_for(lambda: position_counts(database, f"d{unique}-")[0] >= 3000, 90, "3,000 positions stored")
        in_transaction = _kill_inside_a_transaction(database, sink)
        at_kill = position_counts(database, f"d{unique}-")[0]
        sink.start()
        producer.finish(120)
        wait_for(lambda: position_counts(database, f"d{unique}-")[0] >= len(to_send), 120, "all positions")
        time.sleep(2)  # anything still in flight lands before the count
    finally:
        producer.stopped.set()
        sink.ensure_stopped()
    rows, distinct = position_counts(database, f"d{unique}-")
    print(f"\nkill -9: {len(to_send)} sent (+{len(to_send) // 5} redelivered); killed at {at_kill} rows "
          f"(transaction open: {in_transaction}); after restart rows={rows} distinct={distinct}")
    assert in_transaction
    assert rows == distinct == len(to_send)


def test_postgres_down_for_60_s_pauses_the_sink_and_it_resumes_losing_nothing(
    database: Settings, unique: str, scratch: tuple[str, str], tmp_path: Path
) -> None:
    to_send = fixes(unique, vehicles=40, per_vehicle=1000)  # 40,000 fixes over ~80 s
    producer, sink = _start(database, scratch, to_send, 500, tmp_path / "sink.log", f"g-{unique}")
    try:
        wait_for(lambda: position_counts(database, f"d{unique}-")[0] >= 2000, 60, "2,000 positions stored")
        down(database, services=("postgres",))
        stopped_at = time.monotonic()
        time.sleep(60)
        _bring_postgres_back(database)
        outage_s = time.monotonic() - stopped_at
        producer.finish(120)
        wait_for(lambda: position_counts(database, f"d{unique}-")[0] >= len(to_send), 120, "all positions")
        time.sleep(2)
    finally:
        producer.stopped.set()
        sink.ensure_stopped()
        _bring_postgres_back(database)
    rows, distinct = position_counts(database, f"d{unique}-")
    log = (tmp_path / "sink.log").read_text()
    print(f"\npostgres outage {outage_s:.0f} s: {len(to_send)} sent (+{len(to_send) // 5} redelivered); "
          f"rows={rows} distinct={distinct}")
    assert "database unavailable, sink paused" in log and "database back after" in log
    assert sink.proc is not None and sink.proc.returncode in (0, -15)  # it never died on its own
    assert rows == distinct == len(to_send)
