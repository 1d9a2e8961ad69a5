"""Round trips through the real local stack: MQTT accounts and ACL, Kafka clients, TimescaleDB."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import psycopg
import pytest
from kafka import TopicPartition

from fleetwatch.kafka_auth import client_security
from fleetwatch.kafka_io import create_topic, make_admin, make_consumer, make_producer
from fleetwatch.records import Fix, parse_fix
from fleetwatch.settings import Settings
from registry import remove
from tests.registry.helpers import register_test_devices

pytestmark = pytest.mark.integration


class Subscriber:
    """An MQTT 5 client collecting every message it receives on its subscriptions."""

    def __init__(self, settings: Settings, user: str, password: str, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.arrived = threading.Condition()
        self.granted: list[int] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)

        def on_connect(client: mqtt.Client, *_: object) -> None:
            client.subscribe([(t, 1) for t in topics])

        def on_subscribe(_c: object, _u: object, _mid: int, codes: list[mqtt.ReasonCode], _p: object) -> None:
            self.granted = [c.value for c in codes]
            subscribed.set()

        def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
            with self.arrived:
                self.messages.append((msg.topic, msg.payload))
                self.arrived.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription was not acknowledged"

    def wait_for(self, payload: bytes, timeout: float = 10) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: any(p == payload for _, p in self.messages), timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Device:
    """An MQTT 5 publisher logged in as a device account; records the PUBACK reason codes."""

    def __init__(self, settings: Settings, device_id: str, password: str) -> None:
        self.acks: dict[int, int] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(device_id, password)
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc.value)
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 5
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.acks[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _fix(device_id: str, vehicle_id: str, seq: int) -> bytes:
    return Fix(device_id=device_id, vehicle_id=vehicle_id, ts=datetime.now(UTC), lat=32.06, lon=118.79,
               speed_kmh=12.5, heading=90.0, acc=True, seq=seq).to_json()


PW_A, PW_B = "pw-a-0123456789", "pw-b-0123456789"


@pytest.fixture
def two_devices(stack: Settings, unique: str) -> Iterator[tuple[str, str]]:
    a, b = f"t-{unique}-a", f"t-{unique}-b"
    register_test_devices(stack, [(a, f"T{unique[:6]}A", PW_A), (b, f"T{unique[:6]}B", PW_B)])
    yield a, b
    assert remove(stack, [a, b]) == sorted([a, b])


def test_device_fix_reaches_admin_subscriber(stack: Settings, two_devices: tuple[str, str],
                                             unique: str) -> None:
    device_id, _ = two_devices
    sub = Subscriber(stack, stack.mqtt_admin_user, stack.secret("mqtt_admin_password"),
                     [stack.telemetry_topic(device_id)])
    dev = Device(stack, device_id, PW_A)
    try:
        payload = _fix(device_id, f"T{unique[:6]}A", 1)
        assert dev.publish(stack.telemetry_topic(device_id), payload) in (0, 16)  # success / no subscribers
        assert sub.wait_for(payload)
        received = parse_fix(sub.messages[-1][1])
        assert received.device_id == device_id
        assert received.seq == 1
    finally:
        dev.close()
        sub.close()


def test_device_cannot_publish_to_another_devices_topic(stack: Settings, two_devices: tuple[str, str],
                                                       unique: str) -> None:
    a, b = two_devices
    sub = Subscriber(stack, stack.mqtt_admin_user, stack.secret("mqtt_admin_password"),
                     [f"{stack.mqtt_topic_prefix}/#"])
    dev = Device(stack, a, PW_A)
    try:
        forged = _fix(b, f"T{unique[:6]}B", 7)
        assert dev.publish(stack.telemetry_topic(b), forged) == 135  # MQTT 5: Not authorized
        # A later message of the same connection on its own topic: once it arrives, the forged one
        # would have arrived before it (per-connection ordering).
        marker = _fix(a, f"T{unique[:6]}A", 8)
        dev.publish(stack.telemetry_topic(a), marker)
        assert sub.wait_for(marker)
        time.sleep(0.5)
        assert all(p != forged for _, p in sub.messages)
    finally:
        dev.close()
        sub.close()


def test_wrong_device_password_is_refused(stack: Settings, two_devices: tuple[str, str]) -> None:
    a, _ = two_devices
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(a, "not-the-password")
    codes: list[int] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: codes.append(rc.value)
    client.connect(stack.mqtt_host, stack.mqtt_port)
    deadline = time.monotonic() + 5
    while not codes and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    assert codes and codes[0] in (134, 135)  # bad user name or password / not authorized


def test_bridge_shared_subscription_receives_and_cannot_publish(stack: Settings, two_devices: tuple[str, str],
                                                               unique: str) -> None:
    a, _ = two_devices
    bridge_pw = stack.secret("mqtt_bridge_password")
    sub = Subscriber(stack, stack.mqtt_bridge_user, bridge_pw,
                     [f"$share/t{unique}/{stack.mqtt_topic_prefix}/+"])
    dev = Device(stack, a, PW_A)
    bridge_pub = Device(stack, stack.mqtt_bridge_user, bridge_pw)
    try:
        assert sub.granted == [1]
        payload = _fix(a, f"T{unique[:6]}A", 21)
        dev.publish(stack.telemetry_topic(a), payload)
        assert sub.wait_for(payload)
        # The bridge account only reads telemetry; it must not inject fixes for a device.
        assert bridge_pub.publish(stack.telemetry_topic(a), b"{}") == 135
    finally:
        bridge_pub.close()
        dev.close()
        sub.close()


@pytest.fixture
def scratch_topic(stack: Settings, unique: str) -> Iterator[str]:
    """A per-test topic (created on purpose: the broker does not auto-create), deleted afterwards."""
    name = f"test.stack.{unique}"
    create_topic(stack, name)
    yield name
    admin = make_admin(stack)
    try:
        if name in admin.list_topics():
            admin.delete_topics([name])
    finally:
        admin.close()


def test_kafka_python_idempotent_producer_round_trip(stack: Settings, unique: str,
                                                    scratch_topic: str) -> None:
    topic = scratch_topic
    producer = make_producer(stack, client_id="fw-test-kp")
    values = [f"kp-{unique}-{i}".encode() for i in range(5)]
    try:
        metas = [producer.send(topic, key="苏A12345".encode(), value=v).get(timeout=30)
                 for v in values]
    finally:
        producer.close()
    assert len({m.partition for m in metas}) == 1  # same key -> same partition
    consumer = make_consumer(stack, group_id=None, consumer_timeout_ms=15000)
    try:
        tp = TopicPartition(topic, metas[0].partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = []
        for record in consumer:
            got.append(record.value)
            if len(got) == len(values):
                break
    finally:
        consumer.close()
    assert got == values


def test_aiokafka_round_trip(stack: Settings, unique: str, scratch_topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = scratch_topic
    value = f"aio-{unique}".encode()

    async def round_trip() -> bytes:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all",
                                    enable_idempotence=True, **client_security(stack, "admin"))
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap,
                                    group_id=f"test-aio-{unique}", auto_offset_reset="earliest",
                                    enable_auto_commit=False, **client_security(stack, "admin"))
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=30)
            await consumer.commit()
            return bytes(record.value)
        finally:
            await consumer.stop()

    assert asyncio.run(round_trip()) == value


def test_project_topics_exist_with_partitions(stack: Settings) -> None:
    from fleetwatch.topics import TELEMETRY, TOPICS

    consumer = make_consumer(stack, group_id=None)
    try:
        for spec in TOPICS:
            assert consumer.partitions_for_topic(spec.name) == set(range(spec.partitions)), spec.name
        assert len(consumer.partitions_for_topic(TELEMETRY) or ()) >= 6
    finally:
        consumer.close()


def test_hypertable_time_bucket_aggregates(stack: Settings, unique: str) -> None:
    table = f"test_positions_{unique}"
    with psycopg.connect(stack.pg_conninfo, password=stack.secret("pg_password"), autocommit=True) as conn:
        try:
            conn.execute(f"CREATE TABLE {table} (ts timestamptz NOT NULL, vehicle_id text, "
                         "speed double precision)")
            conn.execute("SELECT create_hypertable(%s, 'ts')", (table,))
            base = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} VALUES (%s + make_interval(mins => %s), 'V1', %s)",
                    [(base, minute, float(minute)) for minute in range(30)],
                )
            rows = conn.execute(
                f"SELECT time_bucket('10 minutes', ts) AS b, count(*), avg(speed) FROM {table} "
                "GROUP BY b ORDER BY b"
            ).fetchall()
            is_hyper = conn.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = %s",
                (table,),
            ).fetchone()
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    assert is_hyper == (1,)
    assert [(r[1], r[2]) for r in rows] == [(10, 4.5), (10, 14.5), (10, 24.5)]
    assert rows[0][0] == base


def test_timescaledb_edition_is_reported(stack: Settings) -> None:
    with psycopg.connect(stack.pg_conninfo, password=stack.secret("pg_password")) as conn:
        row = conn.execute("SHOW timescaledb.license").fetchone()
    assert row is not None and row[0] in ("apache", "timescale")


def test_kafka_does_not_auto_create_a_mistyped_topic(stack: Settings, unique: str) -> None:
    from kafka.errors import KafkaTimeoutError

    name = f"test.stack.typo.{unique}"
    producer = make_producer(stack, client_id="fw-test-typo", max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(name, b"lost?").get(timeout=10)
    finally:
        producer.close(timeout=5)
    consumer = make_consumer(stack, group_id=None)
    try:
        assert name not in consumer.topics()
    finally:
        consumer.close()


def test_ensure_topics_repairs_a_topic_made_with_other_settings(stack: Settings, unique: str) -> None:
    """Someone created a project topic by hand with broker defaults: `stack up` brings it in line."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from fleetwatch.stack._kafka import ensure_topics
    from fleetwatch.topics import TopicSpec

    name = f"test.stack.reconcile.{unique}"
    create_topic(stack, name, 1)
    spec = TopicSpec(name, 4, 3_600_000, "compact,delete")
    changes = ensure_topics(stack, (spec,))
    assert any("partitions 1 -> 4" in c for c in changes)
    assert ensure_topics(stack, (spec,)) == []
    admin = make_admin(stack)
    try:
        assert len(admin.describe_topics([name])[0]["partitions"]) == 4
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])["topic"][name]
        assert configs["retention.ms"]["value"] == "3600000"
        assert configs["cleanup.policy"]["value"] == "compact,delete"
        admin.delete_topics([name])
    finally:
        admin.close()
