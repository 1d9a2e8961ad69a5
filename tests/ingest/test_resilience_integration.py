"""No fix is lost when the bridge is SIGKILLed and restarted, or when Kafka stops for 30 s."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from fleetwatch import stack as fw_stack
from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets
from fleetwatch.settings import Settings
from tests.ingest.helpers import BridgeProcess, DevicePublisher, Pacer, fixes_of, only, register_devices

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECEIVE_MAXIMUM = 100
KAFKA_OUTAGE_S = 30.0
DELIVERY_TIMEOUT_S = 10


@contextmanager
def kafka_frozen(settings: Settings) -> Iterator[None]:
    """Freeze the stack's Kafka JVM (SIGSTOP) and always thaw it (SIGCONT), even if the test fails.

    The harsher case for a client: connections stay open and requests just never answer.
    """
    kafka = next(s for s in fw_stack.status(settings) if s.service == "kafka")
    assert kafka.state == "running" and kafka.pid, f"Kafka is not running under the stack: {kafka}"
    os.kill(kafka.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(kafka.pid, signal.SIGCONT)


@contextmanager
def kafka_stopped(settings: Settings) -> Iterator[None]:
    """Stop the stack's Kafka for real (connections refused) and always bring it back."""
    assert fw_stack.down(settings, services=("kafka",)) == {"kafka": True}, "Kafka was not running"
    try:
        yield
    finally:
        fw_stack.ensure_up(settings)


OUTAGES: dict[str, Callable[[Settings], AbstractContextManager[None]]] = {
    "frozen": kafka_frozen,
    "stopped": kafka_stopped,
}


@pytest.mark.parametrize("outage", sorted(OUTAGES))
def test_kill9_and_kafka_outage_lose_no_fix(
    stack: Settings, unique: str, bridges: Callable[..., BridgeProcess], outage: str
) -> None:
    devices = register_devices(stack, unique, 4)
    ids = {d.device_id for d in devices}
    since = end_offsets(stack, topics.TELEMETRY)
    # A producer delivery timeout shorter than the outage makes Kafka sends fail mid-outage, so
    # the bridge's own re-send path is exercised too, not only the producer's internal retries.
    bridge = bridges(
        f"rs-{unique}",
        receive_maximum=RECEIVE_MAXIMUM,
        extra=["--delivery-timeout", str(DELIVERY_TIMEOUT_S), *only(devices)],
    ).start()
    publishers = [DevicePublisher(stack, d).__enter__() for d in devices]
    pacer = Pacer(publishers, rate_per_s=80)
    in_flight_seen: list[float] = []
    try:
        pacer.start()
        time.sleep(4)
        bridge.kill9()  # mid-run: received-but-unacked fixes must come back on reconnect
        time.sleep(3)
        bridge.start()
        time.sleep(4)
        with OUTAGES[outage](stack):
            deadline = time.monotonic() + KAFKA_OUTAGE_S
            while time.monotonic() < deadline:
                in_flight_seen.append(bridge.metrics()["in_flight"])
                time.sleep(1)
            assert bridge.proc is not None and bridge.proc.poll() is None, "bridge died while Kafka was down"
        time.sleep(8)
        sent = pacer.stop()
    finally:
        pacer.stopped.set()
        for pub in publishers:
            pub.__exit__(None, None, None)
    total_sent = sum(sent.values())

    def distinct() -> set[tuple[str, int]]:
        # Only this bridge's records count: another bridge on the machine must not mask a loss.
        mine = fixes_of(stack, topics.TELEMETRY, ids, since=since, bridge=bridge.instance)
        return {(f.device_id, f.seq) for _, _, f in mine}

    started = time.monotonic()
    while len(got := distinct()) < total_sent and time.monotonic() - started < 180:
        time.sleep(3)
    caught_up_s = time.monotonic() - started
    metrics = bridge.metrics()
    assert bridge.stop() == 0, "graceful shutdown failed"

    expected = {(device_id, seq) for device_id, n in sent.items() for seq in range(n)}
    missing = expected - got
    assert not missing, f"{len(missing)} of {total_sent} fixes lost, e.g. {sorted(missing)[:5]}"
    assert got == expected
    records = fixes_of(stack, topics.TELEMETRY, ids, since=since, bridge=bridge.instance)
    dupes = sum(n - 1 for n in Counter((f.device_id, f.seq) for *_, f in records).values())
    # Back-pressure: while Kafka was away the bridge held at most ReceiveMaximum messages. One
    # over was measured once (101 of 100, CI on 2026-11-29, after the kill -9 and resumed session:
    # Mosquitto 2.0.11 let one message past its quota); the point is a fixed bound, not a buffer
    # that grows with the outage.
    assert max(in_flight_seen) <= RECEIVE_MAXIMUM + 1
    assert max(in_flight_seen) > 0, f"Kafka {outage} never backed anything up (test did not test)"
    assert metrics.get("send_retries", 0) > 0, (
        "no send failed during a 30 s outage with a 10 s delivery timeout"
    )
    print(
        f"\nresilience (kafka {outage} {KAFKA_OUTAGE_S:g} s): sent={total_sent} "
        f"distinct_in_kafka={len(got)} records={len(records)} "
        f"duplicates={dupes} max_in_flight_during_outage={max(in_flight_seen):g} "
        f"(receive_maximum={RECEIVE_MAXIMUM}) caught_up_after={caught_up_s:.1f}s "
        f"redelivered={metrics.get('redelivered', 0):g} send_retries={metrics.get('send_retries', 0):g} "
        f"producer_resets={metrics.get('producer_resets', 0):g}"
    )


def test_sigterm_finishes_in_flight_work_and_restart_duplicates_nothing(
    stack: Settings, unique: str, bridges: Callable[..., BridgeProcess]
) -> None:
    devices = register_devices(stack, unique, 3)
    ids = {d.device_id for d in devices}
    since = end_offsets(stack, topics.TELEMETRY)
    bridge = bridges(f"gs-{unique}", extra=only(devices))
    # First run keeps its session on SIGTERM (no --leave), so what arrives meanwhile waits.
    bridge.argv.remove("--leave")
    bridge.start()
    log = bridge.log
    publishers = [DevicePublisher(stack, d).__enter__() for d in devices]
    pacer = Pacer(publishers, rate_per_s=150)
    try:
        pacer.start()
        time.sleep(3)
        assert bridge.stop() == 0
        first_run = log.read_text()
        time.sleep(2)
        bridge.argv.append("--leave")
        bridge.start()
        time.sleep(3)
        sent = pacer.stop()
    finally:
        pacer.stopped.set()
        for pub in publishers:
            pub.__exit__(None, None, None)
    total = sum(sent.values())
    started = time.monotonic()
    while time.monotonic() - started < 60:
        records = fixes_of(stack, topics.TELEMETRY, ids, since=since, bridge=bridge.instance)
        if len({(f.device_id, f.seq) for *_, f in records}) >= total:
            break
        time.sleep(2)
    assert bridge.stop() == 0
    assert "still unacknowledged" not in first_run
    assert "session present: True" in log.read_text(), "restarted instance did not resume its session"
    keys = Counter((f.device_id, f.seq) for *_, f in records)
    assert set(keys) == {(d, s) for d, n in sent.items() for s in range(n)}
    # Everything the first run took in was produced *and* acknowledged before it disconnected,
    # so the broker had nothing of it to redeliver: no duplicates at all.
    assert max(keys.values()) == 1, f"{sum(v - 1 for v in keys.values())} duplicates after a graceful stop"
