"""Batch intake: the worker's input records taken from faust's consumer a fetch at a time.

faust hands every record to a stream on its own: four asyncio tasks and an `asyncio.wait` in the
fetch loop, a channel queue, an Event and the stream's iterator per record. For a worker whose
core costs ~0.1 ms a fix that machinery was more than half of its time (measured with py-spy; the
README's worker section). Here the consumer's fetch loop keeps faust's offset bookkeeping (read
offsets, gaps, commits, flow control) and sends the records of the intake topics as one list per
fetch into a queue that faust's flow control suspends and clears at a rebalance, like a stream's
channel; records of any other topic go the per-record way (the changelog during recovery).

The worker tracks each record it takes (faust then waits for its ack before a rebalance or a
stop completes) and acks it through the consumer once its state is in the changelog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message
from mode import ServiceT
from mode.utils.queues import FlowControlQueue

#: How many fetches may wait in the queue (a fetch is up to broker_max_poll_records records).
QUEUE_FETCHES = 4


class Intake:
    """The intake topics and the queue of fetched records the worker reads."""

    def __init__(self, app: faust.App, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        self.queue: FlowControlQueue[list[Message]] = app.FlowControlQueue(
            maxsize=QUEUE_FETCHES, clear_on_resume=True
        )

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
                    if last is not None and offset < last:
                        continue  # read before a seek moved the position back: it comes again
                    if last and offset - last > 1 and acks_enabled_for(tp.topic):
                        # missing offsets (compaction, aborted transactions) must not hold
                        # back the committed offset
                        await self._add_gap(tp, last + 1, offset)
                    if tp.topic in mine:
                        batch.append(message)
                    else:
                        await self.wait_first(per_record(message), self.suspend_flow.wait())
                    read_offset[tp] = offset
                if batch and self.flow_active:
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


def track(app: faust.App, records: list[Message]) -> list[Message]:
    """The records of the current consumer generation, tracked as in flight (faust waits for
    their acks before it hands partitions on); older ones were fetched before a rebalance and
    are read again from the committed offsets."""
    consumer = app.consumer
    generation = app.consumer_generation_id
    current = [m for m in records if m.generation_id == generation]
    for message in current:
        consumer.track_message(message)
    return current


__all__ = ["Intake", "IntakeApp", "IntakeConsumer", "track"]
