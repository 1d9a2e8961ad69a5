"""The worker's wall clock, late orders and configuration reloads, on the real Kafka."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import make_producer
from fleetwatch.records import AlertType, Change, ChangeOp, DispatchOrder, Fix
from fleetwatch.settings import Settings
from tests.ingest.helpers import wait_for
from tests.streams.helpers import drive, park
from tests.streams.worker.harness import Bench
from tests.streams.world import RULES, VEHICLE, fix, order, write_world

pytestmark = pytest.mark.integration

FAST = RULES.replace(
    "  - id: js\n    name: 江苏省\n",
    "  - id: js\n    name: 江苏省\n    settings:\n"
    "      offline_after_seconds: 4\n      lateness_seconds: 2\n",
)


def _send(settings: Settings, topic: str, fixes: list[Fix]) -> None:
    producer = make_producer(settings, client_id="fwtest")
    for f in fixes:
        producer.send(topic, key=f.key, value=f.to_json())
    producer.flush(30)
    producer.close()


def _send_order(settings: Settings, topic: str, o: DispatchOrder) -> None:
    producer = make_producer(settings, client_id="fwtest")
    producer.send(topic, key=o.vehicle_id.encode(), value=o.to_json())
    producer.flush(30)
    producer.close()


def _alerts(bench: Bench) -> list[Change]:
    folded = bench.folded(topics.ALERTS, {VEHICLE})
    return sorted(folded.latest.values(), key=lambda c: c.revision)


def _live_fix(when: datetime, seq: int, lon: float) -> Fix:
    """A moving fix taken at `when` (the world's helper reads local Asia/Shanghai times)."""
    local = when.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=8)
    return fix(local.strftime("%Y-%m-%d %H:%M:%S"), 32.0, lon, 40.0, True, seq=seq)


def test_silent_terminal_gets_offline_within_offline_after_plus_one_timer_period(
    settings: Settings, bench: Bench
) -> None:
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "3600"
    bench.setup()
    rules = write_world(bench.tmp, FAST)
    bench.worker("live", rules).start()
    # Five live fixes, one a second (timestamps whole seconds, as terminals send them).
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    while datetime.now(UTC) < t0:
        time.sleep(0.05)
    fixes = []
    producer = make_producer(settings, client_id="fwtest")
    for i in range(5):
        fixes.append(_live_fix(t0 + timedelta(seconds=i), 10_000 + i, 118.75 + i * 1e-4))
        producer.send(bench.telemetry, key=fixes[-1].key, value=fixes[-1].to_json())
        producer.flush(10)
        time.sleep(max(0.0, (t0 + timedelta(seconds=i + 1) - datetime.now(UTC)).total_seconds()))
    producer.close()
    last = fixes[-1].ts
    offline: list[Change] = []

    def raised() -> bool:
        nonlocal offline
        offline = [c for c in _alerts(bench) if c.record is not None and c.record.type is AlertType.OFFLINE]  # type: ignore[union-attr]
        return bool(offline)

    wait_for(raised, 30, "offline alert while silent", interval_s=0.5)
    alert = offline[0]
    assert alert.op is ChangeOp.UPSERT and alert.record.end is None and alert.record.start == last  # type: ignore[union-attr]
    delay = (alert.emitted_at - last).total_seconds()
    # offline_after_seconds (4) + one timer period (1), plus 1 s for the batch and the send.
    assert 4.0 < delay <= 4.0 + 1.0 + 1.0, delay
    print(f"offline raised {delay:.2f} s after the last fix (offline_after 4 s, timer 1 s)")
    # The terminal reports again after a real gap (> 4 s): the core's alert, same id, with an end.
    while datetime.now(UTC) < last + timedelta(seconds=6):
        time.sleep(0.1)
    back = _live_fix(datetime.now(UTC).replace(microsecond=0), 10_100, 118.76)
    _send(settings, bench.telemetry, [back])

    def closed() -> bool:
        latest = {c.id: c for c in _alerts(bench)}
        rec = latest[alert.id].record
        return rec is not None and rec.end is not None  # type: ignore[union-attr]

    wait_for(closed, 30, "offline alert completed by the core", interval_s=0.5)


def test_late_order_exempts_an_alert_already_raised_on_the_topic(settings: Settings, bench: Bench) -> None:
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "3"
    bench.setup()
    rules = write_world(bench.tmp)
    bench.worker("orders", rules).start()
    trip = drive("2026-03-07 10:00:00", 32.0, 118.75, minutes=30) + park(
        "2026-03-07 10:31:00", 32.0, 118.85, minutes=5
    )
    _send(settings, bench.telemetry, trip)
    raised: list[Change] = []

    def off_hours() -> bool:
        nonlocal raised
        raised = [
            c for c in _alerts(bench) if c.op is ChangeOp.UPSERT and c.record.type is AlertType.OFF_HOURS
        ]  # type: ignore[union-attr]
        return bool(raised)

    wait_for(off_hours, 60, "off_hours alert raised", interval_s=0.5)
    _send_order(settings, bench.orders, order("o-late-1", "2026-03-07 09:30:00", "2026-03-07 12:00:00"))

    def exempted() -> bool:
        latest = {c.id: c for c in _alerts(bench)}[raised[0].id]
        return latest.op is ChangeOp.RETRACT

    wait_for(exempted, 60, "the raised alert retracted by the late order", interval_s=0.5)
    latest = {c.id: c for c in _alerts(bench)}[raised[0].id]
    assert (latest.reason, latest.order_id) == ("exempted", "o-late-1")
    assert latest.revision > raised[0].revision


def test_rules_reload_keeps_state_and_a_bad_file_is_rejected(settings: Settings, bench: Bench) -> None:
    bench.env["FLEETWATCH_WORKER_IDLE_CLOSE_SECONDS"] = "4"
    bench.setup()
    rules = write_world(bench.tmp)
    worker = bench.worker("reload", rules).start()
    trip = drive("2026-03-07 10:00:00", 32.0, 118.75, minutes=30) + park(
        "2026-03-07 10:31:00", 32.0, 118.85, minutes=5
    )
    _send(settings, bench.telemetry, trip[:30])
    good = rules.read_text()
    rules.write_text(good.replace("version: 1", "version: 1\nbogus_key: 1"))
    rejected = bench.wait_ops("config_rejected", 1, 30)
    assert "bogus_key" in rejected[0].detail["error"]
    rules.write_text(good)  # back to good: a file change reloads it
    bench.wait_ops("config_reloaded", 1, 30)
    worker.signal(signal.SIGHUP)
    reloads = bench.wait_ops("config_reloaded", 2, 30)
    assert reloads[-1].detail["trigger"] == "SIGHUP"
    _send(settings, bench.telemetry, trip[30:])

    def one_off_hours() -> bool:
        found = [
            c for c in _alerts(bench) if c.op is ChangeOp.UPSERT and c.record.type is AlertType.OFF_HOURS
        ]  # type: ignore[union-attr]
        return len(found) == 1

    wait_for(one_off_hours, 60, "one off_hours alert for the trip spanning the reloads", interval_s=0.5)
    alert = next(c for c in _alerts(bench) if c.record is not None)
    # The trip was not cut by the reloads: the state was kept.
    assert alert.record.start == trip[0].ts  # type: ignore[union-attr]
