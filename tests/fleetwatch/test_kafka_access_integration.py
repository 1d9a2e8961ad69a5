"""Kafka access on the real broker: outside clients without (or with the wrong) credentials are
refused, and each service principal can do exactly what fleetwatch/kafka_auth.py grants it.

Each refusal's own error text is printed (visible without ``-s``): the README quotes them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError
from pydantic import SecretStr

from fleetwatch import topics
from fleetwatch.kafka_auth import kcat_args
from fleetwatch.kafka_io import end_offsets, make_consumer, make_producer, read_topic
from fleetwatch.records import parse_ops_event
from fleetwatch.settings import KafkaRole, Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def own(stack: Settings) -> Settings:
    """The stack's settings with each client acting as its own role (tests/conftest.py makes
    other tests act as admin)."""
    return stack.model_copy(update={"kafka_as": None})


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    lines: list[str] = []
    yield lines
    with capsys.disabled():
        for line in lines:
            print(f"\n  refused: {line}", end="")


def _kcat(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["kcat", *argv], input=stdin, capture_output=True, timeout=60)


def _error_lines(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = proc.stderr.decode(errors="replace")
    return " | ".join(line.strip() for line in text.splitlines()
                      if any(word in line.lower() for word in ("error", "fail")))


def test_kcat_without_credentials_can_neither_read_nor_forge_fixes(stack: Settings,
                                                                   report: list[str]) -> None:
    assert end_offsets(stack, topics.TELEMETRY)  # the topic is there: the admin sees its partitions
    for bootstrap in (stack.kafka_bootstrap, stack.kafka_tools_bootstrap):
        read = _kcat(["-b", bootstrap, "-C", "-t", topics.TELEMETRY, "-o", "beginning", "-e", "-m", "10"])
        assert read.returncode != 0 and read.stdout == b""
        assert "Failed to query metadata" in read.stderr.decode() or "Broker transport failure" in \
            read.stderr.decode()
        report.append(f"kcat -C {topics.TELEMETRY} on {bootstrap}, no credentials: {_error_lines(read)}")
        before = end_offsets(stack, topics.TELEMETRY)
        forge = _kcat(["-b", bootstrap, "-P", "-t", topics.TELEMETRY, "-m", "10"], b'{"v":1,"forged":true}\n')
        assert forge.returncode != 0
        assert end_offsets(stack, topics.TELEMETRY) == before
        report.append(f"kcat -P {topics.TELEMETRY} on {bootstrap}, no credentials: {_error_lines(forge)}")


def test_kcat_with_the_bridges_credentials_cannot_read_or_forge_alerts(
    own: Settings, tmp_path: Path, report: list[str]
) -> None:
    bridge = kcat_args(own, "bridge", tmp_path)
    assert (tmp_path / "kcat-bridge.conf").stat().st_mode & 0o077 == 0
    read = _kcat([*bridge, "-C", "-t", topics.ALERTS, "-o", "beginning", "-e", "-m", "10"])
    assert read.returncode != 0 and read.stdout == b""
    assert "Topic authorization failed" in read.stderr.decode()
    report.append(f"kcat -C {topics.ALERTS} as svc-bridge: {_error_lines(read)}")

    before = end_offsets(own, topics.ALERTS)
    forge = _kcat([*bridge, "-P", "-t", topics.ALERTS], b'{"alert_id":"forged"}\n')
    assert forge.returncode != 0
    assert "Topic authorization failed" in forge.stderr.decode()
    assert end_offsets(own, topics.ALERTS) == before
    report.append(f"kcat -P {topics.ALERTS} as svc-bridge: {_error_lines(forge)}")

    # The same credentials do work where the bridge is allowed: its dead-letter topic.
    dlq_before = sum(end_offsets(own, topics.TELEMETRY_DLQ).values())
    wrote = _kcat([*bridge, "-P", "-t", topics.TELEMETRY_DLQ], b"kcat-probe\n")
    assert wrote.returncode == 0, wrote.stderr.decode()
    assert sum(end_offsets(own, topics.TELEMETRY_DLQ).values()) == dlq_before + 1


def test_a_wrong_password_is_refused(own: Settings, tmp_path: Path, report: list[str]) -> None:
    wrong = own.model_copy(update={"kafka_bridge_password": SecretStr("not-the-password")})
    proc = _kcat([*kcat_args(wrong, "bridge", tmp_path), "-L"])
    assert proc.returncode != 0
    assert "Authentication failed" in proc.stderr.decode()
    report.append(f"kcat -L as svc-bridge with a wrong password: {_error_lines(proc)}")


def _can_write(settings: Settings, role: KafkaRole, topic: str) -> bool:
    producer = make_producer(settings, client_id=f"fw-acl-{role}", role=role, max_block_ms=10_000)
    try:
        producer.send(topic, key=b"acl-probe", value=b"").get(timeout=15)
        return True
    except KafkaError as exc:
        # TopicAuthorizationFailed; or, for a principal with no WRITE anywhere, the idempotent
        # producer's InitProducerId already fails with ClusterAuthorizationFailed.
        if "AuthorizationFailed" not in repr(exc):
            raise
        return False
    finally:
        producer.close(timeout=5)


def _sees(settings: Settings, role: KafkaRole, topic: str) -> bool:
    """Whether ``role`` gets ``topic``'s partitions in metadata (DESCRIBE, implied by READ/WRITE)."""
    consumer = make_consumer(settings, group_id=None, role=role)
    try:
        return bool(consumer.partitions_for_topic(topic))
    finally:
        consumer.close()


# Writes land on the dead-letter topics only: the probes must not look like data to other tests.
WRITES: list[tuple[KafkaRole, str, bool]] = [
    ("bridge", topics.TELEMETRY_DLQ, True),
    ("jt808", topics.TELEMETRY_DLQ, True),
    ("worker", topics.WORKER_DLQ, True),
    ("sink", topics.SINK_DLQ, True),
    ("bridge", topics.ALERTS, False),
    ("bridge", topics.ORDERS, False),
    ("worker", topics.TELEMETRY, False),  # a worker cannot forge fixes
    ("sink", topics.ALERTS, False),
    ("notifier", topics.ALERTS, False),
    ("notifier", topics.TELEMETRY, False),
]


@pytest.mark.parametrize(("role", "topic", "allowed"), WRITES)
def test_each_service_writes_only_its_own_topics(own: Settings, role: KafkaRole, topic: str,
                                                 allowed: bool) -> None:
    assert _can_write(own, role, topic) is allowed


SEES: list[tuple[KafkaRole, str, bool]] = [
    ("worker", topics.TELEMETRY, True),
    ("worker", topics.ORDERS, True),
    ("sink", topics.TELEMETRY, True),
    ("sink", topics.ALERTS, True),
    ("notifier", topics.ALERTS, True),
    ("notifier", topics.TELEMETRY, False),
    ("bridge", topics.ALERTS, False),
    ("jt808", topics.ORDERS, False),
    ("sink", topics.OPS, False),
]


@pytest.mark.parametrize(("role", "topic", "allowed"), SEES)
def test_each_service_sees_only_its_own_topics(own: Settings, role: KafkaRole, topic: str,
                                               allowed: bool) -> None:
    assert _sees(own, role, topic) is allowed


def test_the_notifier_reads_alerts_in_its_own_group_only(own: Settings) -> None:
    from kafka.errors import GroupAuthorizationFailedError

    alerts = make_consumer(own, group_id=own.notify_group, topics=(topics.ALERTS,), role="notifier")
    try:
        alerts.poll(timeout_ms=3000)  # joins the group: allowed
    finally:
        alerts.close()
    other = make_consumer(own, group_id=f"{own.notify_group}-other", topics=(topics.ALERTS,), role="notifier")
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            for _ in range(10):
                other.poll(timeout_ms=1000)
    finally:
        other.close()


def test_the_worker_runs_under_its_own_principal(own: Settings, tmp_path: Path, unique: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """faust (consumer group, changelog topic it creates) and the worker's aiokafka producer as
    svc-worker: it joins, gets the telemetry partitions and reports so on the ops topic."""
    from tests.streams.world import write_world

    rules = write_world(tmp_path)
    since = end_offsets(own, topics.OPS)
    monkeypatch.delenv("FLEETWATCH_KAFKA_AS")  # its own role, not the tests' admin
    env = {
        "FLEETWATCH_WORKER_START_FROM": "latest",
        "FLEETWATCH_WORKER_DATA_DIR": str(tmp_path / "worker-data"),
    }
    from tests.streams.worker.harness import WorkerProcess

    name = f"acl-{unique}"
    worker = WorkerProcess(tmp_path / "worker.log", name, ["--config", str(rules)], env)
    worker.start()
    try:
        deadline = time.monotonic() + 90
        assigned: list[object] = []
        while not assigned and time.monotonic() < deadline:
            events = [parse_ops_event(r.value) for r in read_topic(own, topics.OPS, since=since)]
            assigned = [e for e in events if e.worker == name and e.kind == "partitions_assigned"
                        and e.detail.get("partitions")]
            time.sleep(1)
        assert assigned, worker.tail()
        assert "AuthorizationFailed" not in worker.log.read_text(errors="replace")
    finally:
        worker.stop()
