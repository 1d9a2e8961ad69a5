"""The worker's batch intake without a broker: flow control that never blocks the fetch loop, and
the ledger rule for what may be taken on and committed (the consumer loop itself runs in the
integration tests: equivalence, kill -9, workers joining)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.intake import Intake, PartitionLedger

P0 = TP("telemetry", 0)
P1 = TP("telemetry", 1)


@dataclass(frozen=True)
class Rec:
    tp: TP
    offset: int


def _recs(tp: TP, *offsets: int) -> list[Rec]:
    return [Rec(tp, o) for o in offsets]


def _owned(committed: dict[TP, int], max_queued: int = 100) -> Intake:
    intake = Intake(["telemetry"], max_queued=max_queued)
    intake.assigned(committed)
    intake.at_committed(committed)
    return intake


def _offer_take(intake: Intake, *records: Rec) -> list[int]:
    intake.offer(intake.begin_fetch(), list(records))
    fetches = asyncio.run(intake.take(10_000))
    return [r.offset for r, _ in intake.take_on(fetches).records]


# -- flow control --------------------------------------------------------------------------------


def test_a_full_queue_leaves_the_intake_partitions_out_of_fetches_until_the_worker_takes() -> None:
    intake = Intake(["telemetry"], max_queued=3)
    changelog = TP("app-vehicles-changelog", 0)
    active = {P0, P1, changelog}
    intake.offer(intake.begin_fetch(), _recs(P0, 0, 1))
    assert intake.fetchable(active) == active and intake.room.is_set()
    intake.offer(intake.begin_fetch(), _recs(P1, 0, 1))  # never blocks, even past the bound
    assert intake.full and not intake.room.is_set()
    assert intake.fetchable(active) == {changelog}
    asyncio.run(intake.take(2))
    assert not intake.full and intake.room.is_set() and intake.fetchable(active) == active


def test_a_full_queue_makes_the_fetch_wait_for_room_not_for_the_other_partitions_records() -> None:
    # A fetch of only the other partitions (faust's assignor topic: no records ever) waited out
    # its whole timeout while the worker emptied the queue, and the worker sat idle meanwhile.
    intake = Intake(["telemetry"], max_queued=2)
    assignor = TP("app-__assignor-__leader", 0)
    active = {P0, P1, assignor}

    async def plan_while_the_worker_takes() -> tuple[set[TP], float]:
        intake.offer(intake.begin_fetch(), _recs(P0, 0, 1))
        assert intake.full
        plan = asyncio.ensure_future(intake.fetch_plan(active, timeout=60.0))
        await asyncio.sleep(0)
        assert not plan.done()  # waiting for room
        await intake.take(2)
        # done long before its 60 s timeout: room, not the assignor topic, ended the wait
        return await asyncio.wait_for(plan, timeout=5.0)

    assert asyncio.run(plan_while_the_worker_takes()) == (active, 60.0)


def test_a_queue_still_full_after_the_wait_fetches_only_what_the_others_have_buffered() -> None:
    intake = Intake(["telemetry"], max_queued=2)
    changelog = TP("app-vehicles-changelog", 0)
    intake.offer(intake.begin_fetch(), _recs(P0, 0, 1))

    async def plans() -> list[tuple[set[TP], float]]:
        return [await intake.fetch_plan(active, timeout=0.01) for active in ({P0, changelog}, {P0})]

    assert asyncio.run(plans()) == [({changelog}, 0.0), (set(), 0.0)]
    intake = Intake(["telemetry"], max_queued=2)
    assert asyncio.run(intake.fetch_plan({P0, changelog}, timeout=1.0)) == ({P0, changelog}, 1.0)


def test_take_joins_queued_fetches_up_to_the_batch_size_and_never_splits_one() -> None:
    intake = Intake(["telemetry"], max_queued=100)
    for offsets in ([1, 2], [3], [4, 5, 6], [7]):
        intake.offer(intake.begin_fetch(), _recs(P0, *offsets))

    async def takes() -> list[list[int]]:
        return [[r.offset for f in await intake.take(3) for r in f.records] for _ in range(3)]

    assert asyncio.run(takes()) == [[1, 2, 3], [4, 5, 6], [7]]
    assert intake.queued == 0


def test_a_rebalance_drops_the_queue_and_frees_room_so_nothing_waits_for_a_cleared_queue() -> None:
    # The first version's stall: the fetch loop blocked in a put on a full queue that faust
    # cleared at the rebalance, and nothing ever woke it. Here the fetch loop never waits on the
    # queue, and dropping the queue makes room at once.
    intake = _owned({P0: 0}, max_queued=2)
    stale = intake.begin_fetch()
    intake.offer(intake.begin_fetch(), _recs(P0, 0, 1, 2))
    assert intake.full
    intake.revoking({P0})
    assert intake.queued == 0 and intake.room.is_set() and not intake.full
    intake.offer(stale, _recs(P0, 3))  # a fetch begun before the revoke: dropped unseen
    assert intake.queued == 0


def test_the_worker_waits_for_a_fetch_and_wakes_when_one_comes() -> None:
    intake = Intake(["telemetry"], max_queued=10)

    async def run() -> list[int]:
        waiting = asyncio.ensure_future(intake.take(10))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        intake.offer(intake.begin_fetch(), _recs(P0, 5))
        return [r.offset for f in await asyncio.wait_for(waiting, 1) for r in f.records]

    assert asyncio.run(run()) == [5]


# -- taking on -----------------------------------------------------------------------------------


def test_nothing_is_taken_on_before_the_committed_offset_is_known() -> None:
    intake = Intake(["telemetry"], max_queued=100)
    intake.assigned({P0})
    assert _offer_take(intake, *_recs(P0, 7, 8)) == []  # read again after the seek
    intake.at_committed({P0: 7})
    assert _offer_take(intake, *_recs(P0, 7, 8)) == [7, 8]


def test_records_are_taken_on_once_in_offset_order_from_the_committed_offset() -> None:
    intake = _owned({P0: 10, P1: 0})
    assert _offer_take(intake, *_recs(P0, 10, 11), *_recs(P1, 0)) == [10, 11, 0]
    # a re-read after a seek to the committed offset: only 12 is new
    assert _offer_take(intake, *_recs(P0, 10, 11, 12)) == [12]
    # a later seek to the committed offset does not move a started ledger back
    intake.at_committed({P0: 10})
    assert _offer_take(intake, *_recs(P0, 11, 12, 13)) == [13]


def test_a_hole_is_read_again_and_records_past_it_wait() -> None:
    intake = _owned({P0: 0})
    assert _offer_take(intake, *_recs(P0, 0, 1)) == [0, 1]
    intake.offer(intake.begin_fetch(), _recs(P0, 4, 5))
    taken = intake.take_on(asyncio.run(intake.take(100)))
    assert taken.records == [] and taken.seeks == {P0: 2}
    before = intake.begin_fetch()  # under way while the seek is made
    intake.sought(taken.seeks)
    # fetched before the seek took effect: still past the hole, waits
    intake.offer(before, _recs(P0, 6))
    assert [r.offset for r, _ in intake.take_on(asyncio.run(intake.take(100))).records] == []
    assert _offer_take(intake, *_recs(P0, 2, 3, 4)) == [2, 3, 4]


def test_a_hole_still_there_after_the_seek_is_gone_from_the_topic_and_skipped() -> None:
    intake = _owned({P0: 0})
    intake.offer(intake.begin_fetch(), _recs(P0, 5))
    taken = intake.take_on(asyncio.run(intake.take(100)))
    intake.sought(taken.seeks)
    assert _offer_take(intake, *_recs(P0, 5, 6)) == [5, 6]  # retention removed 0..4


def test_revoked_partitions_take_nothing_on_and_fetches_from_before_an_assignment_are_dropped() -> None:
    intake = _owned({P0: 0})
    old = intake.begin_fetch()
    intake.revoking({P0})
    assert _offer_take(intake, *_recs(P0, 0)) == []
    intake.revoked({P0})
    intake.assigned({P0})
    intake.offer(old, _recs(P0, 0))
    intake.at_committed({P0: 0})
    assert intake.queued == 0
    assert _offer_take(intake, *_recs(P0, 0)) == [0]


# -- the commit rule -----------------------------------------------------------------------------


def _process(intake: Intake, records: list[tuple[Rec, PartitionLedger]], vehicles: dict[int, str]) -> None:
    for stamp, (rec, ledger) in enumerate(records):
        intake.processed(ledger, rec.offset, vehicles.get(rec.offset), stamp)


def test_the_commit_offset_moves_over_persisted_records_in_offset_order_only() -> None:
    intake = _owned({P0: 0})
    intake.offer(intake.begin_fetch(), _recs(P0, 0, 1, 2, 3))
    taken = intake.take_on(asyncio.run(intake.take(100)))
    _process(intake, taken.records, {0: "a", 1: "b", 2: "a", 3: None})
    unwritten = {"b"}
    intake.mark_persisted(lambda vehicle, stamp: vehicle not in unwritten)
    assert intake.commit_offsets() == {P0: 1}  # 1 (vehicle b) holds back 2 and 3
    unwritten.clear()
    intake.mark_persisted(lambda vehicle, stamp: vehicle not in unwritten)
    assert intake.commit_offsets() == {P0: 4} and intake.in_flight == 0


def test_records_of_a_revoked_assignment_never_reach_the_next_ones_commit() -> None:
    intake = _owned({P0: 0})
    intake.offer(intake.begin_fetch(), _recs(P0, 0, 1))
    taken = intake.take_on(asyncio.run(intake.take(100)))
    intake.revoking({P0})
    # in flight during the revoke: processed and persisted, committed before the hand-over
    _process(intake, taken.records, {})
    intake.mark_persisted(lambda vehicle, stamp: True)
    assert intake.commit_offsets() == {P0: 2}
    intake.revoked({P0})
    assert intake.commit_offsets() == {}
    intake.assigned({P0})
    intake.at_committed({P0: 2})
    # a late ack of the old assignment's ledger changes nothing now
    old_ledger = taken.records[0][1]
    intake.processed(old_ledger, 5, None, 99)
    intake.mark_persisted(lambda vehicle, stamp: True)
    assert intake.commit_offsets() == {}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["fetch", "reread", "lost", "persist", "rebalance"]),
            st.integers(1, 6),
            st.integers(0, 3),
        ),
        max_size=40,
    )
)
def test_committed_offsets_only_ever_cover_persisted_records_taken_on_once(
    steps: list[tuple[str, int, int]],
) -> None:
    """Random fetches, re-reads, lost fetches, persists and rebalances: a commit offset never
    passes a record that was not processed and persisted in this assignment, and no offset is
    taken on twice in one assignment."""
    log_end = 0  # the partition's records: offsets 0 .. log_end - 1
    committed = 0  # the group's committed offset
    intake = _owned({P0: 0})
    position = 0  # the consumer's fetch position
    taken_now: set[int] = set()
    processed: list[tuple[int, int]] = []  # (offset, stamp)
    persisted_upto = -1  # stamps <= this are persisted
    stamp = 0
    for action, n, back in steps:
        if action == "fetch":
            log_end = max(log_end, position + n)
            intake.offer(intake.begin_fetch(), _recs(P0, *range(position, position + n)))
            position += n
        elif action == "reread":
            position = max(committed, position - back)
        elif action == "lost":
            # a fetch that never reached the intake (only before a seek for a hole settles:
            # a hole seen again after its seek is taken as gone from the topic)
            if all(ledger.sought_at_fetch is None for ledger in intake.ledgers.values()):
                position += n
                log_end = max(log_end, position)
        elif action == "persist":
            persisted_upto = max(persisted_upto, stamp - 1 - back)
        else:
            for offset in intake.commit_offsets().values():
                committed = max(committed, offset)
            intake.revoking({P0})
            intake.revoked({P0})
            intake.assigned({P0})
            intake.at_committed({P0: committed})
            position, taken_now, processed = committed, set(), []
        if intake.queued:
            taken = intake.take_on(asyncio.run(intake.take(10_000)))
            if taken.seeks:
                position = taken.seeks[P0]
                intake.sought(taken.seeks)
            for rec, ledger in taken.records:
                assert rec.offset not in taken_now
                taken_now.add(rec.offset)
                intake.processed(ledger, rec.offset, "v", stamp)
                processed.append((rec.offset, stamp))
                stamp += 1
        intake.mark_persisted(lambda vehicle, s, upto=persisted_upto: s <= upto)
        safe = intake.commit_offsets().get(P0)
        if safe is not None:
            covered = {o for o, s in processed if s <= persisted_upto}
            assert set(range(committed, safe)) <= covered


def test_an_assignment_replaces_every_ledger() -> None:
    intake = _owned({P0: 0})
    intake.offer(intake.begin_fetch(), _recs(P0, 0))
    taken = intake.take_on(asyncio.run(intake.take(100)))
    _process(intake, taken.records, {})
    intake.assigned({P1})  # no revoke seen for P0: its ledger goes all the same
    intake.mark_persisted(lambda vehicle, stamp: True)
    assert intake.commit_offsets() == {} and set(intake.ledgers) == {P1}
