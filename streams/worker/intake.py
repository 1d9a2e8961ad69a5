"""Batch intake: the worker's input records taken from faust's consumer a fetch at a time.

faust hands every record to a stream on its own: four asyncio tasks and an `asyncio.wait` in the
fetch loop, a channel queue, an Event and the stream's iterator per record. For a worker whose
core costs ~0.1 ms a fix that machinery cost more than the core: 41 % of the worker's busy time
against 30 % (py-spy; the README's worker section). Here the consumer's fetch loop keeps faust's
offset bookkeeping (gaps, commits, flow control) and sends the records of the intake topics as
one list per fetch into a queue that faust's flow control suspends and clears at a rebalance,
like a stream's channel; records of any other topic go the per-record way (the changelog during
recovery).

The worker takes records on in offset order per partition (`take_on`): a fetch a rebalance
dropped shows as a hole and is read again; it tracks each record it takes (faust then waits for
its ack before a rebalance or a stop completes) and acks it through the consumer once its state
is in the changelog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode import ServiceT
from mode.utils.queues import FlowControlQueue

#: How many fetches may wait in the queue (a fetch is up to broker_max_poll_records records).
QUEUE_FETCHES = 4
#: A partition sought back to a missing offset that still starts later after this long has lost
#: those records to retention: go on from what is there.
REREAD_GIVE_UP_SECONDS = 30.0

log = logging.getLogger("fleetwatch.worker")


class Intake:
    """The intake topics and the queue of fetched records the worker reads."""

    def __init__(self, app: faust.App, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        self.queue: FlowControlQueue[list[Message]] = app.FlowControlQueue(
            maxsize=QUEUE_FETCHES, clear_on_resume=True
        )
        #: per partition, the offset the worker takes on next (records go in offset order)
        self.expected: dict[TP, int] = {}
        #: partitions sought back to a missing offset: (that offset, when to give up on it)
        self.rereading: dict[TP, tuple[int, float]] = {}

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions assigned anew or revoked: they start again at the committed offset."""
        for tp in tps:
            self.expected.pop(tp, None)
            self.rereading.pop(tp, None)

    async def take(self, at_most: int) -> list[Message]:
        """Wait for a fetch; add whatever else is queued already, up to `at_most` records."""
        records = await self.queue.get()
        while len(records) < at_most and not self.queue.empty():
            records = records + self.queue.get_nowait()
        return records


class IntakeConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, with a fetch loop that delivers intake records in batches."""

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        intake = cast(IntakeApp, self.app).intake
        mine = intake.topics
        per_record = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetcher_stopped = cast(Any, fetcher)._stopped.is_set
        stopped: tuple[type[BaseException], ...] = (asyncio.CancelledError, *self.consumer_stopped_errors)
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                batch: list[Message] = []
                async for tp, message in self.getmany(timeout=1.0):
                    offset = message.offset
                    last = read_offset[tp]
                    if last and offset - last > 1 and acks_enabled_for(tp.topic):
                        # missing offsets (compaction, aborted transactions) must not hold
                        # back the committed offset
                        await self._add_gap(tp, last + 1, offset)
                    if tp.topic in mine:
                        # Never skipped as "read already": a fetch that raced a seek may have
                        # been dropped by the rebalance; a record delivered twice is a
                        # redelivery, which the core drops (dedup).
                        batch.append(message)
                    elif last is None or offset >= last:
                        await self.wait_first(per_record(message), self.suspend_flow.wait())
                    read_offset[tp] = offset
                if batch and self.flow_active and self.app.flow_control.is_active():
                    # a rebalance that starts meanwhile abandons the batch: the records are
                    # read again from the committed offsets
                    await self.wait_first(intake.queue.put(batch), self.suspend_flow.wait())
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                await asyncio.sleep(0)
        except stopped:
            if self.app.should_stop:
                return
            raise


class IntakeTransport(faust_aiokafka.Transport):
    Consumer = IntakeConsumer


class IntakeApp(faust.App):
    """A faust App whose consumer feeds `intake` (set it before the app starts)."""

    intake: Intake

    def _new_transport(self) -> IntakeTransport:
        return IntakeTransport(self.conf.broker_consumer, self)


async def take_on(app: IntakeApp, records: list[Message]) -> list[Message]:
    """The records the worker processes now, tracked as in flight (faust waits for their acks
    before it hands partitions on): of the current consumer generation, and per partition in
    offset order without a hole. A rebalance can drop a fetch the consumer already moved past
    (faust clears the queues when flow resumes); a later record then shows the hole, and the
    partition is sought back to the missing offset. A record before the expected offset was
    taken on already (a re-read) and is left out."""
    consumer = cast(IntakeConsumer, app.consumer)
    intake = app.intake
    generation = app.consumer_generation_id
    now = time.monotonic()
    taken: list[Message] = []
    holes: dict[TP, int] = {}
    for message in records:
        tp = message.tp
        if message.generation_id != generation or tp in holes:
            continue
        expected = intake.expected.get(tp)
        if expected is None:
            committed = consumer._committed_offset.get(tp)
            expected = committed if committed is not None else message.offset
        if message.offset < expected:
            continue
        if message.offset > expected:
            sought = intake.rereading.get(tp)
            if sought is None or sought[0] != expected:
                holes[tp] = expected
                continue
            if now < sought[1]:
                continue  # fetched before the seek took effect
            log.warning("%s: offsets %d..%d are not in the topic any more", tp, expected, message.offset - 1)
        intake.rereading.pop(tp, None)
        intake.expected[tp] = message.offset + 1
        consumer.track_message(message)
        taken.append(message)
    for tp, offset in holes.items():
        log.warning("%s: records from offset %d were dropped in a rebalance; reading them again", tp, offset)
        intake.rereading[tp] = (offset, now + REREAD_GIVE_UP_SECONDS)
    if holes:
        # in the consumer's own thread (aiokafka is not thread-safe: a seek from this thread
        # can leave its fetcher waiting for a wake-up that never comes)
        await consumer.seek_wait(holes)
    # what faust's streams tell its monitor, whose livelock check reads it
    for tp in {m.tp for m in taken}:
        app.monitor.stream_inbound_time[tp] = now
    return taken


__all__ = ["Intake", "IntakeApp", "IntakeConsumer", "take_on"]
