"""The bridge's and gateway's view of the device registry: a table folded from `fleetwatch.registry.v1`.

`RegistryTable` is the pure fold (device -> registration, tombstones remove). `RegistryCache`
keeps one up to date: it reads the compacted topic from the beginning at start (so it knows
every device before the first fix is judged) and then follows it live, so a device registered
while the bridge runs is accepted without a restart.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaConsumer, TopicPartition

from fleetwatch import topics
from fleetwatch.kafka_io import make_consumer
from fleetwatch.records import ContractError, DeviceRegistration, parse_device_registration
from fleetwatch.settings import KafkaRole, Settings

log = logging.getLogger("fleetwatch.ingest.registry")


class RegistryTable:
    """device_id -> its registration; `apply` takes the topic's records in offset order."""

    def __init__(self, source: str = "the device registry") -> None:
        self.source = source
        self._devices: dict[str, DeviceRegistration] = {}
        self.bad_records = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record: a registration, or a tombstone (no value) removing the key's device."""
        if value is None:
            if key is not None:
                self._devices.pop(key.decode("utf-8", "replace"), None)
            return
        try:
            registration = parse_device_registration(value)
        except ContractError as exc:
            # Only `fleetwatch devices` writes this topic; a bad record is a bug to see, not to die of.
            self.bad_records += 1
            log.warning("%s: unusable registration (key %r): %s", self.source, key, exc)
            return
        self._devices[registration.device_id] = registration

    def registration(self, device_id: str) -> DeviceRegistration | None:
        return self._devices.get(device_id)

    def cached(self, device_id: str) -> str | None:
        """The vehicle of ``device_id`` as known right now (never waits)."""
        registration = self._devices.get(device_id)
        return registration.vehicle_id if registration is not None else None

    def vehicle_of(self, device_id: str) -> str | None:
        return self.cached(device_id)

    def start(self, timeout_s: float = 30.0) -> None:
        """Nothing to follow: a table filled by `apply`."""

    def stop(self) -> None:
        """Nothing to stop."""

    def __len__(self) -> int:
        return len(self._devices)


class RegistryCache(RegistryTable):
    """A `RegistryTable` that follows the registry topic in a thread of its own.

    An unknown device makes `vehicle_of` wait for one catch-up to the topic's current end: its
    registration was acknowledged by Kafka before its MQTT account existed, so a catch-up that
    starts after its first fix arrived has it. A device found unknown is not re-checked for
    ``recheck_unknown_s``, so a flood from an unregistered terminal costs one catch-up a second.
    """

    def __init__(self, settings: Settings, role: KafkaRole, topic: str = topics.REGISTRY, *,
                 recheck_unknown_s: float = 1.0, catch_up_timeout_s: float = 5.0) -> None:  # fmt: skip
        super().__init__(f"registry topic {topic}")
        self.settings = settings
        self.role = role
        self.topic = topic
        self._recheck_unknown_s = recheck_unknown_s
        self._catch_up_timeout_s = catch_up_timeout_s
        self._lock = threading.Condition()
        self._wanted = 0  # catch-ups asked for
        self._done = 0  # catch-ups finished (each started after it was asked for)
        self._unknown_at: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: KafkaConsumer | None = None
        self._parts: list[TopicPartition] = []
        self.catch_ups = 0

    def start(self, timeout_s: float = 30.0) -> None:
        """Read the topic up to its current end, then follow it; raises if it does not exist."""
        consumer = make_consumer(self.settings, group_id=None, role=self.role,
                                 client_id="fleetwatch-registry-cache")
        deadline = time.monotonic() + timeout_s
        while not (parts := consumer.partitions_for_topic(self.topic)):
            if time.monotonic() > deadline:
                consumer.close()
                raise RuntimeError(f"Kafka topic {self.topic!r} does not exist (run `fleetwatch stack up`)")
            time.sleep(0.2)
        self._parts = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(self._parts)
        consumer.seek_to_beginning(*self._parts)
        self._consumer = consumer
        self._catch_up(timeout_s)
        log.info("%s: %d devices", self.source, len(self))
        self._thread = threading.Thread(target=self._follow, name="registry-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        if self._consumer is not None:
            self._consumer.close()

    def vehicle_of(self, device_id: str) -> str | None:
        vehicle = self.cached(device_id)
        if vehicle is not None or self._thread is None or not self._thread.is_alive():
            return vehicle
        now = time.monotonic()
        last = self._unknown_at.get(device_id)
        if last is not None and now - last < self._recheck_unknown_s:
            return None
        with self._lock:
            self._wanted += 1
            ticket = self._wanted
            self._lock.notify_all()
            self._lock.wait_for(lambda: self._done >= ticket or self._stopping.is_set(),
                                self._catch_up_timeout_s)  # fmt: skip
        vehicle = self.cached(device_id)
        if vehicle is None:
            if len(self._unknown_at) > 10_000:
                self._unknown_at.clear()
            self._unknown_at[device_id] = time.monotonic()
        else:
            self._unknown_at.pop(device_id, None)
        return vehicle

    def _poll(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        for records in self._consumer.poll(timeout_ms=timeout_ms, max_records=5000).values():
            for record in records:
                self.apply(record.key, record.value)

    def _catch_up(self, timeout_s: float) -> None:
        """Consume until every partition reaches the end offset it has now."""
        assert self._consumer is not None
        consumer = self._consumer
        ends = consumer.end_offsets(self._parts)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.source}: not caught up within {timeout_s:g} s")
            self._poll(100)
        self.catch_ups += 1

    def _follow(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                wanted = self._wanted
            try:
                if wanted > self._done:
                    self._catch_up(self._catch_up_timeout_s)
                else:
                    self._poll(100)
            except Exception as exc:  # Kafka away: keep serving the table we have, retry
                log.warning("%s: %s: %s", self.source, type(exc).__name__, exc)
                self._stopping.wait(1.0)
            if wanted > self._done:
                with self._lock:
                    self._done = wanted
                    self._lock.notify_all()
