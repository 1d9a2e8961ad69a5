"""Publishing to Mosquitto like a terminal: MQTT 5, QoS 1, persistent session, reconnect, outbox.

paho-mqtt keeps every QoS 1 message it has not seen a PUBACK for in its own outbox: messages
published while the broker is unreachable are queued, and after a reconnect with the same
session (``clean_start=False`` plus a session expiry) everything unacknowledged is resent. We
count what we handed over (sent), what the broker acknowledged (acked), and what it refused or
never acknowledged (failed).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleetwatch.mqtt_conn import configure_tls, mqtt_address
from fleetwatch.settings import Settings

SESSION_EXPIRY_S = 3600

#: paho's threaded loop waits in select(), which cannot watch descriptors >= 1024 (FD_SETSIZE);
#: each client holds three (socket + wake-up socket pair), so ~340 clients is a hard ceiling
#: per process (measured: the 341st never connects). Stay well below it.
MAX_CLIENTS_PER_PROCESS = 250


@dataclass
class PublishStats:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    seconds: float = 0.0
    connections: int = 0
    account: str = "per-device"

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    def __iadd__(self, other: PublishStats) -> PublishStats:
        self.sent += other.sent
        self.acked += other.acked
        self.failed += other.failed
        self.seconds = max(self.seconds, other.seconds)
        self.connections += other.connections
        return self


class Connection:
    """One MQTT 5 client with its own credentials and a persistent session."""

    def __init__(
        self, settings: Settings, client_id: str, username: str, password: str, max_inflight: int = 100
    ) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.username = username
        self.client.username_pw_set(username, password)
        configure_tls(self.client, settings)
        self.client.max_inflight_messages_set(max_inflight)
        self.window = max_inflight
        self.client.max_queued_messages_set(0)  # unbounded outbox: nothing is dropped while offline
        self.client.reconnect_delay_set(min_delay=1, max_delay=4)
        # hundreds of clients in one process share the GIL: CONNACK handling can lag seconds
        self.client.connect_timeout = 30.0
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._lock = threading.Lock()
        self.sent = 0
        self.acked = 0
        self.failed = 0
        self.connects = 0
        self.refused: str | None = None
        self.connected = threading.Event()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(
            *mqtt_address(settings), keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()

    def _on_connect(self, _c: object, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            return
        self.connects += 1
        self.connected.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, _reason: object, _p: object) -> None:
        self.connected.clear()

    def _on_publish(self, _c: object, _u: object, _mid: int, reason: ReasonCode, _p: object) -> None:
        with self._lock:
            if reason.is_failure:
                self.failed += 1
            else:
                self.acked += 1

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"paho refused to queue a message: {mqtt.error_string(info.rc)}")
        self.sent += 1

    @property
    def pending(self) -> int:
        return self.sent - self.acked - self.failed

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(frozen=True)
class Outgoing:
    device_id: str
    payload: bytes


class Sender:
    """Routes messages to connections: one per device (realistic) or a pool of svc-admin ones (load)."""

    def __init__(
        self,
        settings: Settings,
        devices: dict[str, str],
        *,
        admin_connections: int = 0,
        client_tag: str = "sim",
    ) -> None:
        self.settings = settings
        self.connections: dict[str, Connection] = {}
        self.admin = admin_connections > 0
        if self.admin:
            password = settings.secret("mqtt_admin_password")
            pool = [
                Connection(
                    settings,
                    f"fw-{client_tag}-load-{os.getpid()}-{i}",
                    settings.mqtt_admin_user,
                    password,
                    200,
                )
                for i in range(admin_connections)
            ]
            self._pool = pool
        else:
            if len(devices) > MAX_CLIENTS_PER_PROCESS:
                raise ValueError(
                    f"{len(devices)} per-device connections in one process: paho's select() loop "
                    f"handles at most {MAX_CLIENTS_PER_PROCESS}; use more processes or svc-admin"
                )
            for device_id, password in devices.items():
                self.connections[device_id] = Connection(
                    settings, f"fw-{client_tag}-{device_id}", device_id, password
                )

    def _conn(self, device_id: str) -> Connection:
        if self.admin:
            # a device always uses the same pooled connection, so its messages stay in order
            return self._pool[zlib.crc32(device_id.encode()) % len(self._pool)]
        return self.connections[device_id]

    @property
    def all(self) -> list[Connection]:
        return self._pool if self.admin else list(self.connections.values())

    def wait_connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for c in self.all:
            while not c.connected.wait(0.05) and not c.refused and time.monotonic() < deadline:
                pass
            if c.refused:
                raise ConnectionRefusedError(f"broker refused {c.username!r}: {c.refused}")
        # not connected yet is fine: the outbox holds messages until the broker is reachable

    def send(self, msg: Outgoing) -> None:
        conn = self._conn(msg.device_id)
        # While connected, never hand paho more than its in-flight window: paho rescans its whole
        # outbox on every PUBACK (`_update_inflight`), so a deep queue makes acks quadratic
        # (profiled: 15 of 17 CPU-s at 20k queued). While disconnected the outbox grows freely.
        while conn.pending >= conn.window and conn.connected.is_set():
            time.sleep(0.0005)
        conn.publish(self.settings.telemetry_topic(msg.device_id), msg.payload)

    def stats(self) -> tuple[int, int, int]:
        conns = self.all
        return sum(c.sent for c in conns), sum(c.acked for c in conns), sum(c.failed for c in conns)

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(c.pending for c in self.all):
            time.sleep(0.05)

    def close(self) -> None:
        for c in self.all:
            c.close()


def pace(messages: Iterable[Outgoing], rate: float) -> Iterator[Outgoing]:
    """Yield messages no faster than ``rate`` per second (0: as fast as possible)."""
    if rate <= 0:
        yield from messages
        return
    start = time.monotonic()
    for n, m in enumerate(messages):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0.002:
            time.sleep(delay)
        yield m


def publish(
    settings: Settings,
    messages: Iterable[Outgoing],
    devices: dict[str, str],
    *,
    rate: float = 0.0,
    admin_connections: int = 0,
    drain_timeout: float = 60.0,
    on_progress: Callable[[int, int, int], None] | None = None,
    client_tag: str = "sim",
) -> PublishStats:
    """Publish in order; returns counts. Blocks until every message is acked or ``drain_timeout``."""
    sender = Sender(settings, devices, admin_connections=admin_connections, client_tag=client_tag)
    t0 = time.monotonic()
    try:
        sender.wait_connected()
        last = 0.0
        for msg in pace(messages, rate):
            sender.send(msg)
            now = time.monotonic()
            if now - last > 0.25:
                last = now
                sent, acked, failed = sender.stats()
                if on_progress:
                    on_progress(sent, acked, failed)
        sender.drain(drain_timeout)
        sent, acked, failed = sender.stats()
        if on_progress:
            on_progress(sent, acked, failed)
        return PublishStats(
            sent, acked, sent - acked, time.monotonic() - t0, len(sender.all),
            "svc-admin pool" if admin_connections else "per-device",
        )  # fmt: skip
    finally:
        sender.close()


# --------------------------------------------------------------------------------------------
# several processes (load mode): each takes the devices whose index % n == its shard
# --------------------------------------------------------------------------------------------

_SHARED: dict[str, object] = {}


def _worker(
    shard: int,
    n: int,
    rate: float,
    admin_connections: int,
    counters: object,
    result: object,
) -> None:
    settings: Settings = _SHARED["settings"]  # type: ignore[assignment]
    source: Callable[[int, int], Iterable[Outgoing]] = _SHARED["source"]  # type: ignore[assignment]
    devices: dict[str, str] = _SHARED["devices"]  # type: ignore[assignment]
    if not admin_connections:
        # per-device connections: this process connects only the devices of its own shard
        devices = dict(list(devices.items())[shard::n])

    def progress(sent: int, acked: int, failed: int) -> None:
        counters[3 * shard] = sent  # type: ignore[index]
        counters[3 * shard + 1] = acked  # type: ignore[index]
        counters[3 * shard + 2] = failed  # type: ignore[index]

    stats = publish(
        settings, source(shard, n), devices, rate=rate / n, admin_connections=admin_connections,
        on_progress=progress, client_tag=f"sim{shard}",
    )  # fmt: skip
    row = [stats.sent, stats.acked, stats.failed, stats.seconds, stats.connections]
    result[5 * shard : 5 * shard + 5] = row  # type: ignore[index]


def publish_parallel(
    settings: Settings,
    source: Callable[[int, int], Iterable[Outgoing]],
    devices: dict[str, str],
    *,
    processes: int,
    rate: float = 0.0,
    admin_connections: int = 0,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> PublishStats:
    """Fork ``processes`` publishers over shards of the devices (data is shared copy-on-write)."""
    ctx = mp.get_context("fork")
    _SHARED.update(settings=settings, source=source, devices=devices)
    counters = ctx.Array("q", 3 * processes, lock=False)
    result = ctx.Array("d", 5 * processes, lock=False)
    procs = [
        ctx.Process(target=_worker, args=(i, processes, rate, admin_connections, counters, result))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        time.sleep(0.25)
        if on_progress:
            c = list(counters)
            on_progress(sum(c[0::3]), sum(c[1::3]), sum(c[2::3]))
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"publisher process {p.pid} failed with exit code {p.exitcode}")
    r = list(result)
    total = PublishStats(account="svc-admin pool" if admin_connections else "per-device")
    for i in range(processes):
        total += PublishStats(
            int(r[5 * i]), int(r[5 * i + 1]), int(r[5 * i + 2]), r[5 * i + 3], int(r[5 * i + 4])
        )
    return total
