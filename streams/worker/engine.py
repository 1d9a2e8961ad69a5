"""The worker's decisions, without a broker: a fix, an order or a clock tick for one vehicle's
slot -> the records to publish (trip/alert changes, vehicle status, ops events, dead letters).

Everything here is synchronous and takes the wall clock as an argument, so the faust agents in
`streams.worker.app` only move bytes and the tests can drive it directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetwatch import topics
from fleetwatch.records import (
    Alert,
    Change,
    ChangeOp,
    ContractError,
    DeadLetter,
    DeadLetterStage,
    OpsEvent,
    Rejection,
    Trip,
    VehicleStatus,
    VehicleStatusKind,
    parse_alert,
    parse_fix,
    parse_order,
)
from geofence import Rules
from streams.core import Context, Event, EventKind, OrderBook
from streams.core.reevaluate import reevaluate
from streams.core.timers import close_provisionally, open_alert_ids, process_with_timers, reconcile, tick
from streams.worker.state_store import VehicleSlot


@dataclass(frozen=True, slots=True)
class Out:
    """One record to publish."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True)
class EngineConfig:
    worker: str = "worker"
    live_lag_seconds: float = 120.0
    idle_close_seconds: float = 4 * 3600.0
    vehicle_state_seconds: float = 10.0
    trips_topic: str = topics.TRIPS
    alerts_topic: str = topics.ALERTS
    vehicle_state_topic: str = topics.VEHICLE_STATE
    ops_topic: str = topics.OPS
    dlq_topic: str = topics.WORKER_DLQ


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input record came from (for dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


class Engine:
    """Holds the rules and the order book; every method works on one vehicle's slot."""

    def __init__(self, rules: Rules, config: EngineConfig) -> None:
        self.config = config
        self.book = OrderBook()
        self.ctx = Context(rules, self.book)
        self._adopted: set[str] = set()
        self._status_sent: dict[str, float] = {}
        self._status_dirty: set[str] = set()
        self.counts: dict[str, int] = {"fixes": 0, "orders": 0, "dead_letters": 0, "changes": 0}

    # -- configuration -------------------------------------------------------------------------

    def replace_rules(self, rules: Rules) -> None:
        """New rules for every later step; per-vehicle state is kept as it is."""
        self.ctx = Context(rules, self.book)

    def adopt(self, slot: VehicleSlot) -> None:
        """First use of a slot in this process (new, or restored from the changelog): put its
        orders into the book."""
        if slot.vehicle_id in self._adopted:
            return
        self._adopted.add(slot.vehicle_id)
        for raw in slot.orders.values():
            self.book.add(parse_order(raw))

    # -- inputs --------------------------------------------------------------------------------

    def on_fix(
        self, slot: VehicleSlot | None, raw: bytes, src: Source, now: datetime
    ) -> tuple[VehicleSlot | None, list[Out]]:
        """Parse and process one telemetry record; a record that fails the contract (or that the
        a date the work calendar does not cover is the core's `calendar_missing` report: an ops event,
off-hours undetermined, everything else goes on) becomes a dead letter."""
        try:
            fix = parse_fix(raw, now=now)
            _check_key(src.key, fix.vehicle_id)
        except ContractError as exc:
            return slot, [self._dead_letter(Rejection.from_contract(exc), raw, src, now)]
        if slot is None:
            slot = VehicleSlot.new(fix.vehicle_id, src.partition)
        self.adopt(slot)
        _, events = process_with_timers(slot.core, slot.timers, fix, self.ctx)
        self.counts["fixes"] += 1
        slot.partition = src.partition
        slot.last_received = now.timestamp()
        slot.closed = False
        if slot.newest is None or fix.ts >= slot.newest.ts:
            slot.newest = fix
            slot.live = abs((now - fix.ts).total_seconds()) <= self.config.live_lag_seconds
        outs = self._publish(slot, events, now)
        outs += self.status(slot, now)
        return slot, outs

    def on_order(
        self, slot: VehicleSlot | None, raw: bytes, src: Source, now: datetime
    ) -> tuple[VehicleSlot | None, list[Out]]:
        """Join a dispatch order to its vehicle; re-evaluate what the vehicle's retained history
        raised, so an order that arrives after its alerts exempts them (retracted, with reason)."""
        try:
            order = parse_order(raw)
            _check_key(src.key, order.vehicle_id)
        except ContractError as exc:
            return slot, [self._dead_letter(Rejection.from_contract(exc), raw, src, now)]
        if slot is None:
            slot = VehicleSlot.new(order.vehicle_id, src.partition)
        self.adopt(slot)
        self.counts["orders"] += 1
        slot.orders[order.order_id] = bytes(raw)
        self.book.add(order)
        result = reevaluate(slot.core, self.ctx, order.start, closed=slot.closed)
        events = result.events + reconcile(slot.core, slot.timers, result.events)
        outs = self._publish(slot, events, now)
        detail = {
            "order_id": order.order_id,
            "status": order.status.value,
            "replayed_fixes": result.replayed,
            "retracted": sum(1 for e in events if e.kind is EventKind.RETRACT),
            "beyond_horizon": result.beyond_horizon and bool(slot.core.history),
        }
        outs.append(self._ops("order_applied", now, order.vehicle_id, detail))
        return slot, outs

    def on_tick(self, slot: VehicleSlot, now: datetime) -> tuple[bool, list[Out]]:
        """The wall-clock timer for one slot; returns (state changed, records to publish).

        Live vehicles (their newest fix arrived within the live lag of its timestamp) get the
        wall-clock checks of `streams.core.timers`. Any vehicle silent for idle_close_seconds is
        closed provisionally: what the end of its input would emit is published, while its
        episodes stay open in the state (it may report again: same ids, upserts)."""
        self.adopt(slot)
        events: list[Event] = []
        changed = False
        if slot.live and slot.core.max_ts is not None:
            before = (len(slot.core.buffer), len(slot.timers.raised), slot.core.released)
            events += tick(slot.core, slot.timers, self.ctx, now)
            changed = before != (len(slot.core.buffer), len(slot.timers.raised), slot.core.released)
        idle_s = now.timestamp() - slot.last_received
        if not slot.closed and slot.last_received and idle_s >= self.config.idle_close_seconds:
            events += close_provisionally(slot.core, self.ctx)
            slot.closed = changed = True
        outs = self._publish(slot, events, now)
        changed = changed or bool(events)
        if events or slot.vehicle_id in self._status_dirty:
            outs += self.status(slot, now)
        return changed, outs

    # -- outputs -------------------------------------------------------------------------------

    def status(self, slot: VehicleSlot, now: datetime) -> list[Out]:
        """The vehicle's live-map row, at most once per vehicle_state_seconds (the latest wins:
        a throttled update is sent by a later fix or tick)."""
        fix = slot.newest
        if fix is None:
            return []
        vid = slot.vehicle_id
        wall = now.timestamp()
        if wall - self._status_sent.get(vid, float("-inf")) < self.config.vehicle_state_seconds:
            self._status_dirty.add(vid)
            return []
        self._status_sent[vid] = wall
        self._status_dirty.discard(vid)
        vc = self.ctx.vehicle(vid)
        open_ids = open_alert_ids(slot.core, slot.timers)
        silent_s = (now - fix.ts).total_seconds()
        if slot.live and fix.acc and silent_s > vc.settings.offline_after_seconds:
            kind = VehicleStatusKind.OFFLINE
        elif open_ids:
            kind = VehicleStatusKind.ALERTING
        elif fix.acc and fix.speed_kmh >= vc.settings.stationary_speed_kmh:
            kind = VehicleStatusKind.MOVING
        else:
            kind = VehicleStatusKind.PARKED
        row = VehicleStatus(
            vid, vc.org, fix.ts, fix.lat, fix.lon, fix.speed_kmh, fix.acc, kind, tuple(sorted(open_ids)), now
        )
        return [Out(self.config.vehicle_state_topic, vid.encode(), row.to_json())]

    def _publish(self, slot: VehicleSlot, events: Iterable[Event], now: datetime) -> list[Out]:
        outs: list[Out] = []
        key = slot.vehicle_id.encode()
        for e in events:
            if e.kind in (EventKind.LATE_FIX, EventKind.CALENDAR_MISSING):
                outs.append(self._ops(e.kind.value, now, slot.vehicle_id, e.detail))
                continue
            change = _change(slot, e, now)
            if change is None:
                continue
            topic = self.config.trips_topic if change.kind == "trip" else self.config.alerts_topic
            outs.append(Out(topic, key, change.to_json()))
            self.counts["changes"] += 1
        return outs

    def _ops(self, kind: str, now: datetime, vehicle_id: str | None, detail: dict[str, Any]) -> Out:
        event = OpsEvent(kind, now, self.config.worker, vehicle_id, detail)
        return Out(self.config.ops_topic, (vehicle_id or self.config.worker).encode(), event.to_json())

    def ops(self, kind: str, detail: dict[str, Any], now: datetime | None = None) -> Out:
        return self._ops(kind, now or datetime.now(UTC), None, detail)

    def crash_letter(self, exc: Exception, raw: bytes, src: Source, now: datetime) -> Out:
        """A record whose processing raised: dead-lettered with the error, the worker goes on."""
        reason = f"{type(exc).__name__}: {exc}"
        rejection = Rejection("processing_error", None, reason, f"the worker failed on this record: {reason}")
        return self._dead_letter(rejection, raw, src, now)

    def _dead_letter(self, rejection: Rejection, raw: bytes, src: Source, now: datetime) -> Out:
        self.counts["dead_letters"] += 1
        letter = DeadLetter.of(
            rejection,
            payload=raw,
            source_topic=src.topic,
            source_partition=src.partition,
            source_offset=src.offset,
            received_at=now,
            stage=DeadLetterStage.WORKER,
            instance=self.config.worker,
        )
        return Out(self.config.dlq_topic, src.key or b"", letter.to_json())


def _check_key(key: bytes | None, vehicle_id: str) -> None:
    # The key places the record (and the vehicle's state) in a partition; a record keyed as
    # another vehicle would be processed by a worker that does not own this vehicle's state.
    if key is not None and key != vehicle_id.encode():
        shown = key.decode("utf-8", "replace")
        raise ContractError("key_mismatch", "vehicle_id", vehicle_id, f"record is keyed {shown!r}")


def _change(slot: VehicleSlot, e: Event, now: datetime) -> Change | None:
    vid = slot.vehicle_id
    if e.kind in (EventKind.TRIP, EventKind.ALERT) and isinstance(e.record, Trip | Alert):
        kind = "trip" if e.kind is EventKind.TRIP else "alert"
        return Change(kind, ChangeOp.UPSERT, e.key, vid, slot.next_revision(), now, e.record)
    if e.kind is EventKind.RETRACT:
        reason = str(e.detail.get("reason", "retracted")).replace(" ", "_")
        kind = "trip" if e.detail.get("what") == "trip" else "alert"
        order = e.detail.get("order_id")
        return Change(kind, ChangeOp.RETRACT, e.key, vid, slot.next_revision(), now, None, reason, order)
    if e.kind is EventKind.EXEMPTED:
        # An exempted violation: a retraction that keeps the alert and the order for the audit.
        alert = parse_alert(e.detail["alert"])
        order = e.detail.get("order_id")
        revision = slot.next_revision()
        return Change("alert", ChangeOp.RETRACT, alert.alert_id, vid, revision, now, alert, "exempted", order)
    return None


def utcnow() -> datetime:
    return datetime.now(UTC)


__all__ = ["Engine", "EngineConfig", "Out", "Source", "utcnow"]
