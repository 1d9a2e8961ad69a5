"""A worker that stalls past its session timeout while it holds unwritten state, and comes back after
the group gave its partitions to another worker (issue 10: a worker leaving mid-run changes no
result). SIGSTOP / SIGCONT make the stall real: the process keeps its fetched records, its dirty
states and its old generation, exactly like a worker whose event loop or coordinator connection
stalled."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets, make_admin, make_producer, read_topic
from fleetwatch.records import Fix, parse_vehicle_status
from fleetwatch.settings import Settings
from geofence import load_rules
from streams.core import Context, OrderBook, detect_lines
from streams.worker.app import changelog_topic
from streams.worker.state_store import VehicleSlot, load_slot
from tests.ingest.helpers import wait_for
from tests.streams.helpers import drive, park
from tests.streams.worker.harness import Bench, WorkerProcess, telemetry_values
from tests.streams.world import VEHICLE, write_world

pytestmark = pytest.mark.integration

SESSION_S = 6


def _send(settings: Settings, topic: str, fixes: list[Fix]) -> int:
    """Send the fixes; the partition they landed in (one vehicle: one partition)."""
    producer = make_producer(settings, client_id="fwtest")
    futures = [producer.send(topic, key=f.key, value=f.to_json()) for f in fixes]
    producer.flush(30)
    producer.close()
    return int(futures[-1].get(10).partition)


def _assignments(bench: Bench) -> dict[str, list[list[int]]]:
    """Every telemetry assignment each worker announced, in order."""
    out: dict[str, list[list[int]]] = {}
    for e in bench.ops():
        if e.kind == "partitions_assigned":
            out.setdefault(str(e.worker), []).append(list(e.detail["partitions"]))
    return out


def _newest_status_ts(bench: Bench) -> str | None:
    """The newest fix time the live map's feed shows for the vehicle."""
    newest = None
    for r in read_topic(bench.settings, topics.VEHICLE_STATE, since=bench.since[topics.VEHICLE_STATE]):
        row = parse_vehicle_status(r.value)
        if row.vehicle_id == VEHICLE:
            newest = row.ts.isoformat()
    return newest


def _all_committed(bench: Bench) -> bool:
    """The group committed every telemetry record: the states covering them are in the changelog."""
    admin = make_admin(bench.settings)
    try:
        group = bench.env["FLEETWATCH_WORKER_APP_ID"]
        committed = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    mine = {tp.partition: om.offset for tp, om in committed.items() if tp.topic == bench.telemetry}
    ends = end_offsets(bench.settings, bench.telemetry)
    return all(mine.get(p, 0) >= end for p, end in ends.items() if end)


def _latest_state(bench: Bench) -> VehicleSlot:
    """The vehicle's state as a worker restoring from the changelog would read it (the last write)."""
    name = changelog_topic(bench.env["FLEETWATCH_WORKER_APP_ID"])
    values = [r.value for r in read_topic(bench.settings, name) if r.key == VEHICLE.encode()]
    assert values, "no state written for the vehicle"
    return load_slot(bytes(values[-1]))


@contextmanager
def _stopped(worker: WorkerProcess) -> Iterator[None]:
    worker.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        worker.signal(signal.SIGCONT)


@pytest.mark.slow
def test_a_worker_stalled_past_its_session_writes_no_stale_state(settings: Settings, bench: Bench) -> None:
    bench.env.update({
        "FLEETWATCH_WORKER_SESSION_TIMEOUT_SECONDS": str(SESSION_S),
        # Long enough that the stalled worker still holds the state of the first fixes unwritten.
        "FLEETWATCH_WORKER_PERSIST_SECONDS": "15",
        "FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS": "3600",
    })  # fmt: skip
    bench.setup()
    rules = write_world(bench.tmp)
    workers = {name: bench.worker(name, rules).start() for name in ("one", "two")}

    def settled() -> bool:
        latest = {w: parts[-1] for w, parts in _assignments(bench).items()}
        return set(latest) == set(workers) and all(latest.values())

    wait_for(settled, 60, "both workers assigned partitions", interval_s=0.5)
    trip = drive("2026-03-07 10:00:00", 32.0, 118.75, minutes=60)
    first, second = trip[:60], trip[60:]
    partition = _send(settings, bench.telemetry, first)
    owner = next(w for w, parts in _assignments(bench).items() if partition in parts[-1])
    other = next(w for w in workers if w != owner)
    wait_for(lambda: _newest_status_ts(bench) == first[-1].ts.isoformat(), 60, "first fixes processed")

    with _stopped(workers[owner]):
        # The group gives the stalled worker's partitions to the other one, which restores the
        # state from the changelog, reads the records again and goes on with the next fixes.
        taken = len(_assignments(bench)[other])
        wait_for(
            lambda: len(_assignments(bench)[other]) > taken and partition in _assignments(bench)[other][-1],
            SESSION_S + 60, "the other worker took the partition", interval_s=0.5,
        )  # fmt: skip
        _send(settings, bench.telemetry, second)
        wait_for(lambda: _newest_status_ts(bench) == second[-1].ts.isoformat(), 60, "next fixes processed")
        wait_for(lambda: _all_committed(bench), 60, "every record committed (state written)", interval_s=1)
        # Counted while it is still stopped: it rejoins within milliseconds of SIGCONT.
        back = len(_assignments(bench).get(owner, []))

    # Back: the stalled worker rejoins; whatever it held must not overwrite the new owner's state.
    wait_for(lambda: len(_assignments(bench).get(owner, [])) > back, 60, "the stalled worker rejoined")
    wait_for(lambda: _all_committed(bench), 60, "every record committed after the rejoin", interval_s=1)
    state = _latest_state(bench)
    assert state.newest is not None and state.newest.ts == second[-1].ts, (
        f"the changelog's latest state ends at {state.newest.ts if state.newest else None}, "
        f"not at the last fix {second[-1].ts}: a stale write replaced the new owner's"
    )
    # And the result is unchanged: the trip closes with every fix, as `detect` sees it.
    _send(settings, bench.telemetry, park("2026-03-07 11:01:00", 32.0, 119.0, minutes=30))
    ctx = Context(load_rules(rules), OrderBook())
    expected = detect_lines(telemetry_values(settings, bench.telemetry), ctx)
    assert expected.trips

    def trips_equal() -> bool:
        return bench.folded(topics.TRIPS, {VEHICLE}).trips() == expected.trips

    wait_for(trips_equal, 90, "folded trips == detect", interval_s=1)
