"""`fleetwatch stack smoke`: one real round trip through each service, plus their versions."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from fleetwatch.records import Fix
from fleetwatch.settings import Settings
from registry.mosquitto import AccountsError, control, device_commands

from . import _kafka, _mosquitto, _postgres
from ._common import StackError

SMOKE_DEVICE = "fw-smoke-1"
SMOKE_VEHICLE = "SMOKE-1"
SMOKE_TOPIC = "fleetwatch.smoke.v1"
SMOKE_TABLE = "fw_smoke_positions"


def mqtt_round_trip(settings: Settings, timeout: float = 10.0) -> float:
    """Publish a fix as a device account (QoS 1), receive it as svc-admin; return seconds taken."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    # An account only (no registry entry): nothing but this round trip uses the smoke device.
    password = secrets.token_urlsafe(16)
    try:
        control(settings, device_commands(settings, [(SMOKE_DEVICE, password)]))
    except AccountsError as exc:
        raise StackError("mosquitto", str(exc), _mosquitto.paths(settings).log) from None
    fix = Fix(device_id=SMOKE_DEVICE, vehicle_id=SMOKE_VEHICLE, ts=datetime.now(UTC), lat=32.0603,
              lon=118.7969, speed_kmh=0.0, heading=0.0, acc=False, seq=time.time_ns() // 1000)
    payload = fix.to_json()
    topic = settings.telemetry_topic(SMOKE_DEVICE)
    got = threading.Event()
    subscribed = threading.Event()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-smoke-sub-{secrets.token_hex(3)}",
                      protocol=mqtt.MQTTv5)
    sub.username_pw_set(settings.mqtt_admin_user, settings.secret("mqtt_admin_password"))
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_message = lambda _c, _u, msg: got.set() if msg.payload == payload else None
    sub.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fw-smoke-pub-{secrets.token_hex(3)}",
                      protocol=mqtt.MQTTv5)
    pub.username_pw_set(SMOKE_DEVICE, password)
    started = time.monotonic()
    sub.connect(settings.mqtt_host, settings.mqtt_port)
    sub.loop_start()
    try:
        if not subscribed.wait(timeout):
            raise StackError("mosquitto", "svc-admin could not subscribe", _mosquitto.paths(settings).log)
        pub.connect(settings.mqtt_host, settings.mqtt_port)
        pub.loop_start()
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if not got.wait(timeout):
            raise StackError("mosquitto", f"a fix published by {SMOKE_DEVICE} did not reach svc-admin",
                             _mosquitto.paths(settings).log)
        return time.monotonic() - started
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.loop_stop()
        sub.disconnect()


def kafka_round_trip(settings: Settings, timeout: float = 20.0) -> float:
    """Produce one record (acks=all, idempotent) and consume it back; return seconds taken."""
    from kafka import TopicPartition

    from fleetwatch.kafka_io import make_consumer, make_producer
    from fleetwatch.topics import TopicSpec

    _kafka.ensure_topics(settings, (TopicSpec(SMOKE_TOPIC, 1, 24 * 3600 * 1000),))
    nonce = secrets.token_hex(8).encode()
    started = time.monotonic()
    producer = make_producer(settings, client_id="fw-smoke")
    try:
        meta = producer.send(SMOKE_TOPIC, key=b"smoke", value=nonce).get(timeout=timeout)
    finally:
        producer.close()
    consumer = make_consumer(settings, group_id=None, consumer_timeout_ms=int(timeout * 1000))
    try:
        tp = TopicPartition(SMOKE_TOPIC, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        for record in consumer:
            if record.value == nonce:
                return time.monotonic() - started
    finally:
        consumer.close()
    raise StackError("kafka", f"record produced at {SMOKE_TOPIC}@{meta.offset} was not consumed back",
                     _kafka.paths(settings).log)


def postgres_round_trip(settings: Settings) -> tuple[float, int]:
    """Insert into a hypertable and aggregate with time_bucket; return (seconds, bucket count)."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(settings.pg_conninfo, password=settings.secret("pg_password")) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {SMOKE_TABLE} (ts timestamptz NOT NULL, "
                     "vehicle_id text NOT NULL, speed_kmh double precision)")
        conn.execute(f"SELECT create_hypertable('{SMOKE_TABLE}', 'ts', if_not_exists => TRUE)")
        run_id = secrets.token_hex(4)
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {SMOKE_TABLE} VALUES (now() - make_interval(mins => %s), %s, %s)",
                [(i, f"SMOKE-{run_id}", float(i)) for i in range(10)],
            )
        rows = conn.execute(
            f"SELECT time_bucket('5 minutes', ts) AS b, count(*), avg(speed_kmh) FROM {SMOKE_TABLE} "
            "WHERE vehicle_id = %s GROUP BY b ORDER BY b", (f"SMOKE-{run_id}",)
        ).fetchall()
    if sum(r[1] for r in rows) != 10:
        raise StackError("postgres", f"time_bucket over 10 inserted rows counted {sum(r[1] for r in rows)}",
                         _postgres.paths(settings).log)
    return time.monotonic() - started, len(rows)


def run_smoke(settings: Settings, console: Console) -> None:
    table = Table(title="fleetwatch stack smoke")
    for column in ("service", "version", "round trip", "took"):
        table.add_column(column)
    mqtt_s = mqtt_round_trip(settings)
    table.add_row("Mosquitto", _mosquitto.version(), f"fix published as {SMOKE_DEVICE} -> received by "
                  f"{settings.mqtt_admin_user} (QoS 1, MQTT 5)", f"{mqtt_s * 1000:.0f} ms")
    kafka_s = kafka_round_trip(settings)
    table.add_row("Kafka", f"{_kafka.installed_version(_kafka.paths(settings))} (KRaft)",
                  f"produce acks=all idempotent -> consume ({SMOKE_TOPIC})", f"{kafka_s * 1000:.0f} ms")
    pg_s, buckets = postgres_round_trip(settings)
    v = _postgres.versions(settings, settings.secret("pg_password"))
    ts_version = f"{v['timescaledb']} (edition: {v['edition']}) on PostgreSQL {v['postgres']}"
    table.add_row("TimescaleDB", ts_version,
                  f"hypertable insert 10 rows -> time_bucket 5 min: {buckets} buckets",
                  f"{pg_s * 1000:.0f} ms")
    console.print(table)
    console.print("[green]smoke: all three services round-tripped[/]")
