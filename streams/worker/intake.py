"""Batch intake: the worker's input records taken from faust's consumer a fetch at a time.

faust hands every record to a stream on its own: four asyncio tasks and an `asyncio.wait` in the
fetch loop, a channel queue, an Event and the stream's iterator per record. For a worker whose
core costs ~0.1 ms a fix that machinery cost more than the core (41 % of the worker's busy time;
the README's worker section). Here the consumer's fetch loop hands the records of the intake
topics to the worker as one list per fetch; records of any other topic (the changelog during
recovery) go faust's per-record way.

Two rules make it correct by design (`Intake` holds both; unit-tested without a broker):

* **Flow control never blocks the fetch loop.** Handing a fetch over (`offer`) only appends to a
  deque. While `max_queued` records wait, the fetch loop leaves the intake partitions out of its
  fetches (`fetchable`): aiokafka keeps what it prefetched for them, and they are fetched again
  once the worker has taken records out (`room`). Nothing waits for an event only another task
  can set without a timeout, so a queue dropped at a rebalance cannot strand the fetch loop
  (the stall of the first version: a put blocked on a full queue that faust had cleared).
* **Only persisted records are committed, per partition, in offset order, per assignment.** Each
  assignment of a partition gets a fresh `PartitionLedger`. It takes records on only from the
  committed offset (known once faust has sought there), each offset once, in order: a re-read
  is skipped, a hole is read again (seek). A record taken on is pending until the state it
  changed is in the changelog; the commit offset (`safe`) moves over the pending queue's
  persisted head only. A revoke closes the ledger (no more taking on; the records in flight
  finish, persist and commit before the partitions are handed on) and then drops it: an ack
  or a commit of the old ledger cannot reach the next assignment, and fetches made before a
  revoke or an assignment (`epoch`) are dropped unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import ServiceT

log = logging.getLogger("fleetwatch.worker")


class Record(Protocol):
    """What the intake needs of a fetched record (faust's `Message` has it)."""

    @property
    def tp(self) -> TP: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Pending:
    """A record taken on, not committable yet: until `vehicle`'s state of `stamp` is persisted."""

    offset: int
    vehicle: str | None
    stamp: int


@dataclass
class PartitionLedger:
    """One intake partition during one assignment to this worker."""

    tp: TP
    #: the next offset to take on; None until the committed offset is known
    expected: int | None = None
    #: the offset to commit: every record below it has its state in the changelog
    safe: int | None = None
    pending: deque[Pending] = field(default_factory=deque)
    #: revoked: nothing more is taken on; records in flight may still become safe
    closed: bool = False
    #: a hole was sought back to `expected` when the fetch counter stood here
    sought_at_fetch: int | None = None


@dataclass(frozen=True, slots=True)
class Fetch:
    """The intake records of one fetch, tagged with the epoch and number of that fetch."""

    epoch: int
    number: int
    records: list[Any]


@dataclass
class TakenOn:
    """What `take_on` decided: records to process (each with its ledger) and seeks to make."""

    records: list[tuple[Any, PartitionLedger]] = field(default_factory=list)
    seeks: dict[TP, int] = field(default_factory=dict)


class Intake:
    """The fetched intake records on their way to the worker, and the per-partition ledgers."""

    def __init__(self, topics: Iterable[str], max_queued: int) -> None:
        self.topics = frozenset(topics)
        self.max_queued = max_queued
        #: bumped at every revoke and assignment: fetches tagged earlier are dropped
        self.epoch = 0
        self.fetches = 0
        self.queued = 0
        self.ledgers: dict[TP, PartitionLedger] = {}
        #: the worker's "write every changed state and mark what it covers safe" (before a revoke
        #: hands partitions on and before a stop)
        self.settle: Callable[[], Awaitable[None]] | None = None
        self._queue: deque[Fetch] = deque()
        self._ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.dropped = 0

    # -- the fetch loop's side -------------------------------------------------------------------

    def begin_fetch(self) -> tuple[int, int]:
        """Tag for a fetch about to be made: (epoch, fetch number)."""
        self.fetches += 1
        return self.epoch, self.fetches

    @property
    def full(self) -> bool:
        return self.queued >= self.max_queued

    def fetchable(self, active: set[TP]) -> set[TP]:
        """The partitions to fetch now: the intake's are left out while the queue is full."""
        if not self.full:
            return active
        return {tp for tp in active if tp.topic not in self.topics}

    async def fetch_plan(self, active: set[TP], timeout: float) -> tuple[set[TP], float]:
        """The partitions to fetch now and how long that fetch may wait for records. While the
        queue is full it waits for room first (at most `timeout`); still full then, only the
        other partitions, for what is already buffered (no wait). A fetch of the other partitions
        alone (faust's assignor topic, which gets no records) waited out its whole timeout while
        the worker emptied the queue: the worker sat idle ~0.7 s after every few batches (about
        40 % of the benchmark's wall time)."""
        if not self.full:
            return active, timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.room.wait(), timeout)
        if not self.full:
            return active, timeout
        return self.fetchable(active), 0.0

    def offer(self, tag: tuple[int, int], records: list[Any]) -> None:
        """Hand a fetch over (never blocks); a fetch begun before the current epoch is dropped."""
        epoch, number = tag
        if not records:
            return
        if epoch != self.epoch:
            self.dropped += len(records)
            return
        self._queue.append(Fetch(epoch, number, records))
        self.queued += len(records)
        self._ready.set()
        if self.full:
            self.room.clear()

    # -- the worker's side -----------------------------------------------------------------------

    async def take(self, at_most: int) -> list[Fetch]:
        """Wait for a fetch; add whatever else is queued already, up to `at_most` records."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        fetches = [self._queue.popleft()]
        n = len(fetches[0].records)
        while self._queue and n + len(self._queue[0].records) <= at_most:
            fetches.append(self._queue.popleft())
            n += len(fetches[-1].records)
        self._took(n)
        return fetches

    def _took(self, n: int) -> None:
        self.queued -= n
        if not self.full:
            self.room.set()

    def take_on(self, fetches: Iterable[Fetch]) -> TakenOn:
        """The records to process now: of the current epoch, per partition from the committed
        offset, each offset once, in order. A hole (a record past the next expected offset)
        asks for a seek back to it; records of that partition wait for the re-read, except that
        a fetch begun after the seek that still starts past it means those offsets are gone from
        the topic (retention): then it goes on from what is there."""
        out = TakenOn()
        for fetch in fetches:
            if fetch.epoch != self.epoch:
                self.dropped += len(fetch.records)
                continue
            for record in fetch.records:
                ledger = self.ledgers.get(record.tp)
                if ledger is None or ledger.closed or ledger.expected is None:
                    # not ours, revoked, or before the seek to the committed offset: any
                    # record here is read again from the committed offset
                    self.dropped += 1
                    continue
                offset = record.offset
                if offset < ledger.expected:
                    continue  # read again after a seek: taken on already
                if offset > ledger.expected:
                    if ledger.tp in out.seeks:
                        continue
                    sought = ledger.sought_at_fetch
                    if sought is None:
                        out.seeks[ledger.tp] = ledger.expected
                        continue
                    if fetch.number <= sought:
                        continue  # fetched before the seek took effect: wait for the re-read
                    log.error("%s: offsets %d..%d are not in the topic (any more); going on from %d",
                              ledger.tp, ledger.expected, offset - 1, offset)  # fmt: skip
                ledger.expected = offset + 1
                ledger.sought_at_fetch = None
                out.records.append((record, ledger))
        return out

    def sought(self, seeks: Mapping[TP, int]) -> None:
        """The consumer has moved these partitions back to the missing offsets."""
        for tp, offset in seeks.items():
            log.warning("%s: a hole at offset %d; read again from there", tp, offset)
            ledger = self.ledgers.get(tp)
            if ledger is not None and ledger.expected == offset:
                ledger.sought_at_fetch = self.fetches

    def processed(self, ledger: PartitionLedger, offset: int, vehicle: str | None, stamp: int) -> None:
        """A record taken on is processed: it waits for `vehicle`'s state of `stamp`."""
        ledger.pending.append(Pending(offset, vehicle, stamp))

    def mark_persisted(self, persisted: Callable[[str | None, int], bool]) -> None:
        """Move each partition's commit offset over its pending records whose state is persisted
        (`persisted(vehicle, stamp)`), in offset order: it stops at the first one that is not."""
        for ledger in self.ledgers.values():
            pending = ledger.pending
            while pending and persisted(pending[0].vehicle, pending[0].stamp):
                ledger.safe = pending.popleft().offset + 1

    def commit_offsets(self) -> dict[TP, int]:
        return {tp: ledger.safe for tp, ledger in self.ledgers.items() if ledger.safe is not None}

    @property
    def in_flight(self) -> int:
        return sum(len(ledger.pending) for ledger in self.ledgers.values())

    # -- ownership -------------------------------------------------------------------------------

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.dropped += self.queued
        self._queue.clear()
        self._took(self.queued)

    def discard(self) -> None:
        """The group dropped this worker: queued fetches go, and every ledger is closed with its
        pending records forgotten (never committable). The rejoin's assignment brings new ledgers."""
        self._new_epoch()
        for ledger in self.ledgers.values():
            ledger.pending.clear()
            ledger.closed = True

    def revoking(self, tps: Iterable[TP]) -> None:
        """A revoke starts: queued fetches are dropped and nothing more is taken on for `tps`."""
        self._new_epoch()
        for tp in tps:
            if (ledger := self.ledgers.get(tp)) is not None:
                ledger.closed = True

    def revoked(self, tps: Iterable[TP]) -> None:
        """The revoke is done (what was safe is committed): the ledgers go."""
        for tp in tps:
            self.ledgers.pop(tp, None)

    def assigned(self, tps: Iterable[TP]) -> None:
        """A new assignment: a fresh ledger per intake partition, waiting for its committed offset
        (and none for any other: a ledger never outlives its assignment)."""
        self._new_epoch()
        self.ledgers = {tp: PartitionLedger(tp) for tp in tps if tp.topic in self.topics}

    def at_committed(self, offsets: Mapping[TP, int | None]) -> None:
        """The consumer was sought to these committed offsets (None: no commit yet, the start of
        the partition per the reset policy). A ledger still waiting starts there; one that has
        started keeps going (the seek only makes the consumer read again what it took on)."""
        for tp, offset in offsets.items():
            ledger = self.ledgers.get(tp)
            if ledger is None or ledger.closed or offset is None:
                continue
            if ledger.expected is None:
                ledger.expected = offset
                log.info("%s: taking on from the committed offset %d", tp, offset)
            elif offset > ledger.expected:
                # Someone else committed past what this worker took on: another member owns
                # the partition in a generation this worker has not seen (a zombie: us).
                log.error("%s: committed offset %d is past this worker's next offset %d", tp, offset,
                          ledger.expected)  # fmt: skip


class IntakeConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer: a fetch loop that hands intake records over a fetch at a time,
    commit offsets from the intake's ledgers, and the ledgers kept in step with rebalances.

    Its seeks go through the consumer's own thread (`seek_wait`): faust's `seek` calls aiokafka
    from this thread while that one reads the fetcher's buffers (seen: a `KeyError` in aiokafka's
    `Fetcher.fetched_records` crashed a worker right after it sought a new partition)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: first and last offset of the last fetch's records of other topics than the intake's
        #: (the changelog), per partition
        self._fetched_other: dict[TP, tuple[int, int]] = {}

    @property
    def intake(self) -> Intake:
        return cast(IntakeApp, self.app).intake

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        intake = self.intake
        mine = intake.topics
        per_record = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetcher_stopped = cast(Any, fetcher)._stopped.is_set
        stopped: tuple[type[BaseException], ...] = (asyncio.CancelledError, *self.consumer_stopped_errors)
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                tag = intake.begin_fetch()
                batch: list[Message] = []
                self._fetched_other = {}
                delivered: dict[TP, int] = {}
                async for tp, message in self.getmany(timeout=1.0):
                    if tp.topic in mine:
                        batch.append(message)
                        continue
                    offset = message.offset
                    last = read_offset[tp]
                    if last is None or offset >= last:
                        if last and offset - last > 1 and acks_enabled_for(tp.topic):
                            await self._add_gap(tp, last + 1, offset)
                        await self.wait_first(per_record(message), self.suspend_flow.wait())
                        if self.suspend_flow.is_set():
                            break  # the flow stopped: that record may not have reached its handler
                        read_offset[tp] = offset
                    delivered[tp] = offset
                intake.offer(tag, batch)
                await self._read_again_dropped(delivered)
                await asyncio.sleep(0)
        except stopped:
            if self.app.should_stop:
                return
            raise

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """Fetch what the intake has room for (`Intake.fetch_plan`); the fetch loop goes round
        again whatever happens meanwhile."""
        if active_partitions is not None:
            active_partitions, timeout = await self.intake.fetch_plan(active_partitions, timeout)
            if not active_partitions:
                return {}  # an empty set would mean "every partition" to aiokafka
        records = await super()._getmany(active_partitions, timeout)
        self._fetched_other = {
            tp: (batch[0].offset, batch[-1].offset)
            for tp, batch in records.items()
            if batch and tp.topic not in self.intake.topics
        }
        return records

    async def _read_again_dropped(self, delivered: Mapping[TP, int]) -> None:
        """Seek back over the changelog records of the last fetch that faust dropped undelivered.

        faust drops a fetch that returns after its flow stopped (a rebalance), or the rest of it
        when the flow stops half-way, and seeks only the stream partitions back. A changelog record
        dropped after a recovery sought its partition is never read again, and that recovery waits
        for it forever (seen after a stalled worker rejoined: "No event received for active tp
        ...-changelog", the stream partitions never resumed). Reading a changelog record twice is
        harmless: the records after it are read again too, in order."""
        assignment = self.assignment()
        again: dict[TP, int] = {}
        for tp, (first, last) in self._fetched_other.items():
            done = delivered.get(tp)
            if (done is None or done < last) and tp in assignment:
                again[tp] = first if done is None else done + 1
                log.info(
                    "%s: records from %d were fetched but not delivered; reading them again", tp, again[tp]
                )
        if again:
            await self.seek_wait(again)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """faust's seek to the committed offsets, then each new ledger's start set, and only then
        its partition sought there.

        Records of a partition whose ledger does not know its start yet are dropped (`take_on`);
        they are read again only if the consumer is sought back over them *after* the ledger
        knows where to start. aiokafka's seek does not ensure that: it seeks in the consumer's
        thread, partition by partition, while the fetch loop goes on, and only partitions with a
        committed offset above 0 (seen: a takeover dropped offsets 121-151 fetched after
        aiokafka's seek, while the start of another partition was being looked up, and never
        read them; another never read a partition's first 121 records)."""
        committed = await super().seek_to_committed()
        intake = self.intake
        ledgers = dict(intake.ledgers)
        waiting = [tp for tp, ledger in ledgers.items() if ledger.expected is None]
        starts: dict[TP, int | None] = {tp: committed.get(tp) for tp in ledgers}
        unset = [tp for tp in waiting if (starts[tp] or 0) <= 0]
        if unset:
            # no commit yet: the reset policy's start, as aiokafka picks it
            if self.app.conf.consumer_auto_offset_reset == "latest":
                starts.update(await self.highwaters(*unset))
            else:
                starts.update(await self.earliest_offsets(*unset))
        # (an assignment during those awaits brought new ledgers: not these offsets' business)
        current = {tp: offset for tp, offset in starts.items() if intake.ledgers.get(tp) is ledgers[tp]}
        intake.at_committed(current)
        assignment = self.assignment()
        seeks = {
            tp: offset
            for tp in waiting
            if (offset := current.get(tp)) is not None
            and offset >= 0
            and not ledgers[tp].closed
            and tp in assignment
        }
        if seeks:
            await self.seek_wait(seeks)
        return committed

    def _filter_committable_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        mine = self.intake.topics
        offsets = super()._filter_committable_offsets(tp for tp in tps if tp.topic not in mine)
        for tp, offset in self.intake.commit_offsets().items():
            if self._should_commit(tp, offset):
                offsets[tp] = offset
        return offsets

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.intake.revoking(revoked)
        await super().on_partitions_revoked(revoked)
        self.intake.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.intake.assigned(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    async def wait_empty(self) -> None:
        """Before a revoke hands partitions on (or a stop): every record taken on is processed,
        its state written, its offset committed (faust's own wait then commits)."""
        if self.intake.settle is not None:
            await self.intake.settle()
        await super().wait_empty()


class IntakeTransport(faust_aiokafka.Transport):
    Consumer = IntakeConsumer


class IntakeApp(faust.App):
    """A faust App whose consumer feeds `intake` (set it before the app starts)."""

    intake: Intake

    def _new_transport(self) -> IntakeTransport:
        return IntakeTransport(self.conf.broker_consumer, self)


__all__ = ["Fetch", "Intake", "IntakeApp", "IntakeConsumer", "PartitionLedger", "TakenOn"]
