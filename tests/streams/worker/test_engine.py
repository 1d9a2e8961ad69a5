"""The worker's broker-free engine: fixes, orders and clock ticks -> records, by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from fleetwatch import topics
from fleetwatch.records import (
    AlertType,
    ChangeOp,
    DeadLetterStage,
    parse_change,
    parse_dead_letter,
    parse_ops_event,
    parse_vehicle_status,
)
from geofence import Rules
from streams.worker.engine import Engine, EngineConfig, Out, Source
from streams.worker.state_store import VehicleSlot, dump_slot, load_slot
from tests.streams.helpers import drive, park
from tests.streams.world import VEHICLE, fix, order

KEY = VEHICLE.encode()
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)  # the worker's wall clock: long after the fixes


def _src(offset: int, topic: str = topics.TELEMETRY, key: bytes | None = KEY) -> Source:
    return Source(topic, 0, offset, key)


def _feed(engine: Engine, fixes: list, now: datetime = NOW) -> tuple[VehicleSlot, list[Out]]:
    slot = None
    outs: list[Out] = []
    for i, f in enumerate(fixes):
        slot, produced = engine.on_fix(slot, f.to_json(), _src(i), now)
        outs += produced
    assert slot is not None
    return slot, outs


def _changes(outs: list[Out], topic: str = topics.ALERTS) -> list:
    return [parse_change(o.value) for o in outs if o.topic == topic]


def _saturday_trip() -> list:
    # Saturday 2026-03-07: a 30-minute drive, then parked with the ignition off.
    return drive("2026-03-07 10:00:00", 32.0, 118.75, minutes=30) + park(
        "2026-03-07 10:31:00", 32.0, 118.85, minutes=5
    )


def test_late_order_exempts_an_alert_already_raised(rules: Rules) -> None:
    engine = Engine(rules, EngineConfig(idle_close_seconds=60))
    slot, outs = _feed(engine, _saturday_trip())
    # Idle on the wall clock: flushed as at the end of its input, the trip closes, off_hours.
    _, ticked = engine.on_tick(slot, NOW + timedelta(seconds=61))
    raised = [c for c in _changes(ticked) if c.op is ChangeOp.UPSERT]
    assert [c.record.type for c in raised] == [AlertType.OFF_HOURS]
    alert_id = raised[0].id
    approved = order("o-late", "2026-03-07 09:30:00", "2026-03-07 12:00:00")
    slot, outs = engine.on_order(
        slot, approved.to_json(), _src(0, topics.ORDERS), NOW + timedelta(seconds=90)
    )
    retracted = [c for c in _changes(outs) if c.id == alert_id]
    assert retracted and all(c.op is ChangeOp.RETRACT for c in retracted)
    assert {(c.reason, c.order_id) for c in retracted} == {("exempted", "o-late")}
    assert retracted[-1].revision > raised[0].revision
    ops = [parse_ops_event(o.value) for o in outs if o.topic == topics.OPS]
    assert [(e.kind, e.detail["order_id"], e.detail["retracted"] > 0) for e in ops] == [
        ("order_applied", "o-late", True)
    ]
    # The order is part of the vehicle's stored state (a restarted worker re-joins it).
    restored = load_slot(dump_slot(slot))
    fresh = Engine(rules, EngineConfig())
    fresh.adopt(restored)
    assert len(fresh.book) == 1


def test_replayed_fixes_do_not_trip_wall_clock_checks(rules: Rules) -> None:
    engine = Engine(rules, EngineConfig(idle_close_seconds=10**9))
    # Dated months before the wall clock: a replay, not a live terminal; last fix with ignition on.
    slot, _ = _feed(engine, drive("2026-03-04 10:00:00", 32.0, 118.75, minutes=10))
    assert slot.live is False
    _, outs = engine.on_tick(slot, NOW + timedelta(hours=2))
    assert _changes(outs) == []


def test_live_silent_terminal_gets_offline_from_the_timer(rules: Rules) -> None:
    engine = Engine(rules, EngineConfig(idle_close_seconds=10**9))
    fixes = drive("2026-03-04 10:00:00", 32.0, 118.75, minutes=5)
    slot = None
    for i, f in enumerate(fixes):  # each fix arrives a second after it was taken: live
        slot, _ = engine.on_fix(slot, f.to_json(), _src(i), f.ts + timedelta(seconds=1))
    assert slot is not None and slot.live
    last = fixes[-1].ts
    _, outs = engine.on_tick(slot, last + timedelta(seconds=899))
    assert _changes(outs) == []
    _, outs = engine.on_tick(slot, last + timedelta(seconds=905))
    offline = _changes(outs)
    assert [(c.op, c.record.type, c.record.end) for c in offline] == [
        (ChangeOp.UPSERT, AlertType.OFFLINE, None)
    ]


def test_bad_records_become_dead_letters_and_processing_goes_on(rules: Rules) -> None:
    engine = Engine(rules, EngineConfig())
    good = fix("2026-03-04 10:00:00", 32.0, 118.75)
    slot, outs = engine.on_fix(None, b'{"v": 1, "device_id": ', _src(0), NOW)
    assert slot is None
    letter = parse_dead_letter(outs[0].value)
    assert (outs[0].topic, letter.code, letter.source_offset) == (topics.WORKER_DLQ, "malformed_json", 0)
    assert (letter.stage, letter.instance) == (DeadLetterStage.WORKER, "worker")
    assert letter.payload == b'{"v": 1, "device_id": ' and letter.source_topic == "fleetwatch.telemetry.v1"
    _, outs = engine.on_fix(None, good.to_json(), _src(1, key="苏B99999".encode()), NOW)
    assert orjson.loads(outs[0].value)["code"] == "key_mismatch"
    slot, outs = engine.on_fix(None, good.to_json(), _src(3), NOW)
    assert slot is not None and slot.core.max_ts is not None and engine.counts["dead_letters"] == 2


def test_an_uncovered_calendar_date_is_an_ops_report_not_a_dead_letter(rules: Rules) -> None:
    engine = Engine(rules, EngineConfig(idle_close_seconds=60))
    later = datetime(2031, 1, 4, 12, tzinfo=UTC)
    slot, outs = _feed(engine, drive("2031-01-04 10:00:00", 32.0, 118.75, minutes=20), later)
    _, ticked = engine.on_tick(slot, later + timedelta(seconds=61))
    outs += ticked
    assert not [o for o in outs if o.topic == topics.WORKER_DLQ]
    reports = [parse_ops_event(o.value) for o in outs if o.topic == topics.OPS]
    assert [r.kind for r in reports] == ["calendar_missing"] and reports[0].detail["year"] == 2031
    assert _changes(outs, topics.TRIPS), "trips go on on an uncovered date"


def test_revisions_grow_per_vehicle_and_vehicle_state_is_throttled(rules: Rules) -> None:
    engine = Engine(rules, EngineConfig(vehicle_state_seconds=30, idle_close_seconds=60))
    slot, outs = _feed(engine, _saturday_trip())
    _, ticked = engine.on_tick(slot, NOW + timedelta(seconds=61))
    revisions = [c.revision for c in _changes(outs + ticked, topics.TRIPS) + _changes(outs + ticked)]
    assert revisions and len(set(revisions)) == len(revisions)
    states = [parse_vehicle_status(o.value) for o in outs if o.topic == topics.VEHICLE_STATE]
    assert len(states) == 1  # every fix arrived in the same wall-clock second: one update
    later = [parse_vehicle_status(o.value) for o in ticked if o.topic == topics.VEHICLE_STATE]
    assert [s.ts for s in later] == [_saturday_trip()[-1].ts]  # the throttled latest, sent later


def test_an_idle_close_is_provisional_a_vehicle_that_reports_again_continues(rules: Rules) -> None:
    from streams.core import Context, OrderBook, detect_lines
    from tests.streams.worker.fold import Folded

    engine = Engine(rules, EngineConfig(idle_close_seconds=60))
    fixes = _saturday_trip()
    slot, outs = _feed(engine, fixes[:25])
    _, closing = engine.on_tick(slot, NOW + timedelta(seconds=61))  # quiet mid-trip: closed for now
    assert [c.op for c in _changes(closing, topics.TRIPS)] == [ChangeOp.UPSERT]
    later = NOW + timedelta(seconds=120)
    for i, f in enumerate(fixes[25:], start=25):
        slot, produced = engine.on_fix(slot, f.to_json(), _src(i), later)
        outs += produced
    _, end = engine.on_tick(slot, later + timedelta(seconds=61))
    folded = Folded()
    folded.apply(_changes(outs + closing + end, topics.TRIPS) + _changes(outs + closing + end))
    expected = detect_lines([f.to_json() for f in fixes], Context(rules, OrderBook()), now=NOW)
    assert folded.trips() == expected.trips and len(expected.trips) == 1
    assert folded.alerts() == expected.alerts and len(expected.alerts) == 1
