"""The faust-streaming app: telemetry + orders -> per-vehicle state table -> core -> output topics.

One consumer task (concurrency 1, faust-streaming #606) reads the telemetry and orders topics,
both keyed by vehicle_id and co-partitioned with the state table, so the worker that owns a
partition owns those vehicles' fixes, orders and state. It takes the records a fetch at a time
from faust's consumer (`intake`), not one faust Event each.

Per batch it runs the engine and publishes the records (acks=all, idempotent, awaited). A touched
vehicle's state goes to the changelog once it has been dirty for `worker_persist_seconds` (so a
vehicle that sends many fixes in that time costs one write, not one per fix), and a record
becomes committable only once the state it changed is in the changelog, per partition in offset
order (the intake's ledgers), so the committed offset never passes a record whose effect on the
state could be lost. After a crash the uncommitted records are read again: the state restored
from the changelog drops the fixes it already holds (dedup), the rest re-emit the same changes
with the same ids and revisions.

Nothing is written (outputs, states, commits) unless the worker still owns its partitions
(`streams.worker.membership`): a worker dropped from the group while it stalled discards what it
holds instead of writing it over the new owner's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.serializers import codecs
from faust.types import TP, Message

from fleetwatch import topics
from fleetwatch.kafka_auth import client_security, faust_credentials
from fleetwatch.settings import Settings
from streams.worker.config import RulesWatch
from streams.worker.engine import Engine, EngineConfig, Out, Source, utcnow
from streams.worker.intake import Intake, IntakeApp, PartitionLedger
from streams.worker.membership import Membership, Standing, group_coordinator
from streams.worker.state_store import VehicleSlot, dump_slot, load_slot

log = logging.getLogger("fleetwatch.worker")

TABLE = "vehicles"


class _SlotCodec(codecs.Codec):
    """faust value codec for the state table: the worker's `dump_slot` / `load_slot`."""

    def _dumps(self, s: Any) -> bytes:
        return dump_slot(s)

    def _loads(self, s: bytes) -> Any:
        # Recovery replays every version of every key; only the last one is ever used, so it
        # is decoded on first use (`Worker._slot`), not here.
        return _Encoded(s)


@dataclass(frozen=True, slots=True)
class _Encoded:
    """A state table value as read from the changelog, not decoded yet."""

    data: bytes


codecs.register("fw-slot", _SlotCodec())


class _App(IntakeApp):
    """faust's App (with the batch intake), with a hook that runs before it stops consuming:
    every changed state is written, so the final commit covers every record processed."""

    before_stop: Callable[[], Awaitable[None]] | None = None

    async def on_stop(self) -> None:
        if self.before_stop is not None:
            await self.before_stop()
        await super().on_stop()


@dataclass
class WorkerOptions:
    rules: Path
    name: str
    telemetry_topic: str = topics.TELEMETRY
    orders_topic: str = topics.ORDERS
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass
class Stats:
    batches: int = 0
    records: int = 0
    state_writes: int = 0
    state_bytes: int = 0
    #: where the consume loop's time went: waiting for records, running the core, waiting for
    #: the batch's outputs and due states to be acked
    waiting_for_records_s: float = 0.0
    processing_s: float = 0.0
    waiting_for_writes_s: float = 0.0
    started: float = field(default_factory=time.monotonic)


class Worker:
    """Builds the faust app for these settings and options."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        self.rules = RulesWatch(options.rules)
        self.engine = Engine(self.rules.load(), options.engine)
        self.stats = Stats()
        self.membership = Membership(settings.worker_session_timeout_seconds)
        self.lock = asyncio.Lock()
        self.producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._stopping = False
        #: a batch failed half-way: its records must not become committable (they are read again)
        self._failed = False
        self._stamp = 0
        #: vehicle -> (stamp of its first change not yet in the changelog, monotonic time of it)
        self._dirty: dict[str, tuple[int, float]] = {}
        datadir = settings.worker_data_dir / settings.worker_app_id / options.name
        datadir.mkdir(parents=True, exist_ok=True)
        app = _App(
            settings.worker_app_id,
            broker=f"kafka://{settings.kafka_bootstrap}",
            broker_credentials=faust_credentials(settings, "worker"),
            store="memory://",
            datadir=str(datadir),
            topic_partitions=topics.TELEMETRY_PARTITIONS,
            topic_allow_declare=True,  # faust creates its own changelog/assignor topics
            table_standby_replicas=0,
            consumer_auto_offset_reset=settings.worker_start_from,
            producer_acks=-1,
            producer_compression_type="lz4",
            broker_commit_interval=1.0,
            # one fetch is at most one batch: the event loop never runs longer than a batch
            broker_max_poll_records=settings.worker_batch_size,
            broker_session_timeout=settings.worker_session_timeout_seconds,
            # Nothing is written before the first answered heartbeat (`_still_owned`), which comes
            # one interval after the join: at 3 s (Kafka's default) a fresh worker sat idle for
            # that long. A heartbeat a second costs the group coordinator next to nothing.
            broker_heartbeat_interval=min(1.0, settings.worker_session_timeout_seconds / 4),
            web_enabled=False,
            autodiscover=False,
        )
        self.app = app
        app.before_stop = self._drain
        app.on_before_shutdown.connect(self._close_producer)
        # The changelog is declared here (faust would derive its codecs from a model type) so
        # that both writing and recovery use our state codec; faust creates the topic itself.
        changelog = app.topic(
            changelog_topic(settings.worker_app_id),
            partitions=topics.TELEMETRY_PARTITIONS,
            key_serializer="raw",
            value_serializer="fw-slot",
            compacting=True,
            deleting=False,
            # Small segments and an eager cleaner: only closed segments are compacted, and
            # recovery reads whatever has not been compacted yet.
            config={"segment.bytes": str(64 * 1024 * 1024), "min.cleanable.dirty.ratio": "0.1"},
            acks=False,
            internal=True,
            allow_empty=True,
        )
        self.table = app.Table(
            TABLE,
            default=None,
            partitions=topics.TELEMETRY_PARTITIONS,
            key_type=bytes,
            changelog_topic=changelog,
        )
        self.source = app.topic(
            options.telemetry_topic,
            options.orders_topic,
            key_serializer="raw",
            value_serializer="raw",
        )
        # at most two batches wait (plus one fetch): the fetch loop fetches the intake's
        # partitions again once the worker has taken records out
        self.intake = app.intake = Intake((options.telemetry_topic, options.orders_topic),
                                          max_queued=2 * settings.worker_batch_size)  # fmt: skip
        self.intake.settle = self._settle
        app.topics.add(self.source)  # subscribe; the records come through `app.intake`
        app.task(self._consume)
        app.timer(settings.worker_timer_seconds, name="wall_clock")(self._tick)
        # States come due while no record arrives too (the end of a backlog): write them then.
        app.timer(max(0.1, settings.worker_persist_seconds / 2), name="persist")(self._persist_tick)
        app.task(self._on_start)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_partitions_revoked.connect(self._on_revoked)

    # -- lifecycle -----------------------------------------------------------------------------

    async def _on_start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload("SIGHUP")))
        await self._send([self.engine.ops("worker_started", {"rules": str(self.options.rules)})])
        log.info("worker %s started; rules %s", self.options.name, self.options.rules)

    async def _drain(self) -> None:
        """Shutting down: write every changed state and mark what it covers safe to commit."""
        self._stopping = True
        await self._settle()

    async def _settle(self) -> None:
        """Before partitions are handed on (the intake's consumer calls it) or a stop: every
        changed state written; its records safe to commit. Under the lock: a batch in flight
        finishes first."""
        async with self.lock:
            await self._persist_due(force=True)

    async def _close_producer(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def _producer(self) -> AIOKafkaProducer:
        """Our own producer for the output topics: acks=all and idempotence, set explicitly (the
        first rebalance can come before the app's start task, so it is made on first use)."""
        async with self._producer_lock:
            if self.producer is None:
                self.producer = await _start_producer(self.settings, self.options.name)
        return self.producer

    async def _on_assigned(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned: set[TP] = args[0] if args else kwargs.get("assigned", set())
        self.membership.assigned(group_coordinator(self.app))
        mine = sorted(tp.partition for tp in assigned if tp.topic == self.options.telemetry_topic)
        log.info("assigned telemetry partitions %s", mine)
        await self._send([self.engine.ops("partitions_assigned", {"partitions": mine})])

    # -- the consumer ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        """The one reader of the intake (concurrency 1): batch after batch, in fetch order."""
        intake = self.intake
        consumer = self.app.consumer
        monitor = self.app.monitor
        while True:
            waited = time.perf_counter()
            fetched = await intake.take(self.settings.worker_batch_size)
            self.stats.waiting_for_records_s += time.perf_counter() - waited
            taken = intake.take_on(fetched)
            if taken.seeks:
                # in the consumer's own thread (aiokafka is not thread-safe)
                await consumer.seek_wait(taken.seeks)
                intake.sought(taken.seeks)
            if not taken.records:
                continue
            # what faust's streams tell its monitor, whose livelock check reads it
            now = time.monotonic()
            for tp in {m.tp for m, _ in taken.records}:
                monitor.stream_inbound_time[tp] = now
            try:
                await self._batch(taken.records)
            except Exception as exc:
                # Kafka refused the outputs or the changelog: stop without committing
                # anything more; a restart reads the uncommitted records again.
                log.exception("batch failed; stopping the worker")
                self._failed = True
                await self.app.crash(exc)
                return

    async def _batch(self, records: Sequence[tuple[Message, PartitionLedger]]) -> None:
        async with self.lock:
            if not await self._still_owned():
                log.warning("no longer in the group: %d record(s) not processed", len(records))
                return
            started = time.perf_counter()
            now = utcnow()
            outs: list[Out] = []
            for msg, ledger in records:
                key = msg.key if isinstance(msg.key, bytes) else None
                src = Source(msg.topic, msg.partition, msg.offset, key)
                vid = key.decode("utf-8", "replace") if key else ""
                slot = self._slot(vid)
                handler = (
                    self.engine.on_order if msg.topic == self.options.orders_topic else self.engine.on_fix
                )
                raw = msg.value if isinstance(msg.value, bytes) else b""
                try:
                    slot, produced = handler(slot, raw, src, now)
                except Exception as exc:  # never let one record stop the partition
                    log.exception("record %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
                    produced = [self.engine.crash_letter(exc, raw, src, now)]
                outs += produced
                self._stamp += 1
                if slot is not None:
                    self.table.data[slot.vehicle_id.encode()] = slot
                    self._dirty.setdefault(slot.vehicle_id, (self._stamp, time.monotonic()))
                self.intake.processed(ledger, msg.offset, slot.vehicle_id if slot else None, self._stamp)
            processed = time.perf_counter()
            await self._send(outs)
            # a revoke waits for every record in flight to be committable (`Intake.settle`)
            await self._persist_due(force=self._stopping or self.app.rebalancing)
            self.stats.processing_s += processed - started
            self.stats.waiting_for_writes_s += time.perf_counter() - processed
            self.stats.batches += 1
            self.stats.records += len(records)

    def _slot(self, vehicle_id: str) -> VehicleSlot | None:
        if not vehicle_id:
            return None
        key = vehicle_id.encode()
        slot = self.table.data.get(key)
        if isinstance(slot, _Encoded):
            slot = self.table.data[key] = load_slot(slot.data)
        return slot if isinstance(slot, VehicleSlot) else None

    # -- the wall clock ------------------------------------------------------------------------

    async def _tick(self) -> None:
        await self._check_rules()
        if self.app.rebalancing:
            # a revoke waits for every record in flight to be committable (`Intake.settle`)
            await self._settle()
            return
        telemetry = self.options.telemetry_topic
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == telemetry}
        async with self.lock:
            if not await self._still_owned():
                return
            now = utcnow()
            outs: list[Out] = []
            for key in list(self.table.data.keys()):
                slot = self._slot(key.decode())
                if slot is None or slot.partition not in owned:
                    continue
                try:
                    dirty, produced = self.engine.on_tick(slot, now)
                except Exception:
                    log.exception("timer for %s failed", slot.vehicle_id)
                    continue
                outs += produced
                if dirty:
                    self._stamp += 1
                    self._dirty.setdefault(slot.vehicle_id, (self._stamp, time.monotonic()))
            await self._send(outs)
            await self._persist_due(force=False)

    async def _persist_tick(self) -> None:
        if self._dirty:
            async with self.lock:
                await self._persist_due(force=self._stopping or self.app.rebalancing)

    async def _check_rules(self) -> None:
        if self.rules.changed():
            await self._reload("file change")

    async def _reload(self, why: str) -> None:
        """Load the rules again; a bad file is rejected with its error and the old rules stay."""
        async with self.lock:
            result = self.rules.reload()
            if result.rules is not None:
                self.engine.replace_rules(result.rules)
                log.info("rules reloaded (%s)", why)
                out = self.engine.ops("config_reloaded", {"trigger": why, "path": str(self.options.rules)})
            else:
                log.error("rules rejected (%s): %s", why, result.error)
                detail = {"trigger": why, "path": str(self.options.rules), "error": result.error}
                out = self.engine.ops("config_rejected", detail)
            await self._send([out])

    # -- I/O -----------------------------------------------------------------------------------

    async def _send(self, outs: Sequence[Out]) -> None:
        """Publish and wait until Kafka has every record (acks=all) before the batch is acked.

        A send that fails for good (e.g. OutOfOrderSequenceNumber: after a broker restart the
        idempotent producer's sequence state no longer matches the broker's) is retried with a
        new producer, the whole batch again: a record sent twice carries the same id and revision,
        which every reader folds to one. Letting it raise crashed the agent, and faust's restart of
        it left the worker stalled (found by the fault suite, tests/faults)."""
        if not outs:
            return
        delay = 0.5
        while True:
            producer = await self._producer()
            try:
                futures = [await producer.send(o.topic, o.value, key=o.key) for o in outs]
                await asyncio.gather(*futures)
                return
            except KafkaError as exc:
                log.warning("sending %d record(s) failed (%r); new producer, retry in %.1f s", len(outs),
                            exc, delay)  # fmt: skip
                async with self._producer_lock:
                    if self.producer is producer:
                        self.producer = None
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _persist_due(self, *, force: bool) -> None:
        """Write the states dirty for `worker_persist_seconds` (all with `force`) to the changelog,
        then mark committable, per partition in offset order, every record whose state is persisted.
        A worker that lost its partitions writes nothing: it discards (`_still_owned`); after a
        failed batch nothing is written either (its records' outputs may not be in Kafka)."""
        if self._failed or not await self._still_owned():
            return
        horizon = time.monotonic() - self.settings.worker_persist_seconds
        due = [vid for vid, (_, since) in self._dirty.items() if force or since <= horizon]
        slots = [self._slot(vid) for vid in due]
        await self._persist(s for s in slots if s is not None)
        for vid in due:
            del self._dirty[vid]
        self.intake.mark_persisted(self._persisted)

    async def _persist(self, slots: Iterable[VehicleSlot]) -> None:
        """Write states to the table's changelog (the partition of the vehicle's records) with
        our producer, acks=all, and wait for them: faust recovers the table from this topic."""
        producer = await self._producer()
        topic = self.table.changelog_topic.get_topic_name()
        futures = []
        for slot in slots:
            data = dump_slot(slot)
            futures.append(
                await producer.send(topic, data, key=slot.vehicle_id.encode(), partition=slot.partition)
            )
            self.stats.state_writes += 1
            self.stats.state_bytes += len(data)
        if futures:
            await asyncio.gather(*futures)

    async def _still_owned(self) -> bool:
        """Whether this worker may write for its partitions (waiting while that is in doubt). If the
        group dropped it, what it holds is discarded, never written: the changes not in the
        changelog and the records they cover (not committable: their new owner reads them again)."""
        if await self.membership.settled() is Standing.OWNED:
            return True
        if self._dirty or self.intake.in_flight:
            log.warning("no longer in the group: %d state change(s) and %d record(s) discarded",
                        len(self._dirty), self.intake.in_flight)  # fmt: skip
        self._dirty.clear()
        self.intake.discard()
        return False

    def _persisted(self, vehicle: str | None, stamp: int) -> bool:
        """Whether the change `stamp` made to `vehicle`'s state is in the changelog: the vehicle
        has no change waiting, or only later ones."""
        held = self._dirty.get(vehicle) if vehicle is not None else None
        return held is None or held[0] > stamp

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions leave (after the intake settled and committed them): forget their states
        (the new owner restores them from the changelog and reads the uncommitted records again)."""
        revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
        gone = {tp.partition for tp in revoked if tp.topic == self.options.telemetry_topic}
        async with self.lock:  # not while a persist is writing them
            for key in list(self.table.data.keys()):
                slot = self._slot(key.decode())
                if slot is not None and slot.partition in gone:
                    self._dirty.pop(slot.vehicle_id, None)
                    del self.table.data[key]


def changelog_topic(app_id: str) -> str:
    """Faust names a table's changelog topic <app id>-<table>-changelog."""
    return f"{app_id}-{TABLE}-changelog"


def internal_topics(app_id: str) -> tuple[str, ...]:
    """The topics faust creates for an app: the state changelog and the assignor's."""
    return (changelog_topic(app_id), f"{app_id}-__assignor-__leader")


def run(worker: Worker, on_stop: Callable[[], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT (faust's worker owns the event loop)."""
    fw = faust.Worker(worker.app, loglevel="INFO", quiet=True, redirect_stdouts=False)
    try:
        fw.execute_from_commandline()
    finally:
        if on_stop is not None:
            on_stop()


async def _start_producer(settings: Settings, name: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"fleetwatch-worker-{name}",
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        # every send is awaited right away, and a batch's records are all queued before the
        # sender runs: lingering only delayed each batch's two round trips (outputs, then states)
        linger_ms=0,
        **client_security(settings, "worker"),
    )
    await producer.start()
    return producer
