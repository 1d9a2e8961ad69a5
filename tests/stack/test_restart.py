"""`stack down` then `stack up` keeps data: Kafka records, database rows and queued MQTT messages.

Runs on a second, private stack (own directory and ports) so the shared stack that other tests and
engineers use is never taken down; the code path is the same `ensure_up` / `down`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from kafka import TopicPartition
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleetwatch.kafka_io import create_topic, make_consumer, make_producer
from fleetwatch.settings import Settings
from fleetwatch.stack import down, ensure_up, status
from tests.ports import free_ports
from tests.registry.helpers import register_test_devices

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def private_stack(stack: Settings) -> Iterator[Settings]:
    # Outside pytest's 0700 tmp dirs: the postgres and mosquitto OS users must reach it.
    directory = Path(tempfile.mkdtemp(prefix="fw-stack-test-", dir="/tmp"))
    os.chmod(directory, 0o755)
    mqtt_port, mqtt_tls_port, kafka_port, controller_port, tools_port, pg_port = free_ports(6)
    settings = Settings(
        stack_dir=directory,
        mqtt_port=mqtt_port,
        mqtt_tls_port=mqtt_tls_port,
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        kafka_controller_port=controller_port,
        kafka_tools_port=tools_port,
        pg_port=pg_port,
        kafka_heap_mb=384,
    )
    try:
        yield settings
    finally:
        down(settings)
        shutil.rmtree(directory, ignore_errors=True)


def _session_client(settings: Settings, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(settings.mqtt_admin_user, settings.secret("mqtt_admin_password"))
    return client


def _connect_persistent(client: mqtt.Client, settings: Settings) -> None:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.connect(settings.mqtt_host, settings.mqtt_port, clean_start=False, properties=props)


def test_down_then_up_keeps_kafka_postgres_and_queued_mqtt(private_stack: Settings) -> None:
    settings = private_stack
    ensure_up(settings)
    device, password = "restart-dev-1", "pw-restart-0123"
    register_test_devices(settings, [(device, "RESTART-1", password)])
    topic = settings.telemetry_topic(device)

    # MQTT: a persistent QoS 1 session that is offline when the fix is published.
    subscribed = threading.Event()
    sub = _session_client(settings, "restart-sub")
    sub.on_subscribe = lambda *_: subscribed.set()
    _connect_persistent(sub, settings)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    assert subscribed.wait(10)
    sub.loop_stop()
    sub.disconnect()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
    pub.username_pw_set(device, password)
    pub.connect(settings.mqtt_host, settings.mqtt_port)
    pub.loop_start()
    pub.publish(topic, b"queued-while-offline", qos=1).wait_for_publish(10)
    pub.loop_stop()
    pub.disconnect()

    # Kafka and PostgreSQL.
    create_topic(settings, "restart.test")  # topics are created on purpose: auto-create is off
    producer = make_producer(settings, client_id="fw-test-restart")
    meta = producer.send("restart.test", value=b"before-restart").get(timeout=30)
    producer.close()
    pg_password = settings.secret("pg_password")
    with psycopg.connect(settings.pg_conninfo, password=pg_password, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (ts timestamptz NOT NULL, note text)")
        conn.execute("SELECT create_hypertable('kept', 'ts')")
        conn.execute("INSERT INTO kept VALUES (now(), 'before-restart')")

    assert down(settings) == {"postgres": True, "kafka": True, "mosquitto": True}
    assert [s.state for s in status(settings)] == ["stopped", "stopped", "stopped"]
    ensure_up(settings)
    assert [s.state for s in status(settings)] == ["running", "running", "running"]

    consumer = make_consumer(settings, group_id=None, consumer_timeout_ms=15000)
    tp = TopicPartition("restart.test", meta.partition)
    consumer.assign([tp])
    consumer.seek(tp, meta.offset)
    values = [r.value for r in consumer]
    consumer.close()
    assert values[:1] == [b"before-restart"]

    with psycopg.connect(settings.pg_conninfo, password=settings.secret("pg_password")) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("before-restart",)]

    got: list[bytes] = []
    arrived = threading.Event()
    sub = _session_client(settings, "restart-sub")

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        arrived.set()

    sub.on_message = on_message
    _connect_persistent(sub, settings)
    sub.loop_start()
    try:
        assert arrived.wait(10), "the queued QoS 1 message did not survive the broker restart"
        time.sleep(0.2)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got == [b"queued-while-offline"]
