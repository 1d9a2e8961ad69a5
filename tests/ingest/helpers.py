"""Test-side tools for the bridge: device accounts, a QoS 1 device publisher, a bridge subprocess."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleetwatch.kafka_io import read_topic
from fleetwatch.records import Fix, parse_fix
from fleetwatch.settings import Settings
from tests.registry.helpers import register_test_devices
from tests.service import FLEETWATCH as FLEETWATCH  # re-exported: the ingest tests import it from here
from tests.service import ServiceProcess


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    vehicle_id: str
    password: str


def register_devices(settings: Settings, tag: str, n: int) -> list[Device]:
    """``n`` fresh devices named after ``tag`` (unique per test), registered through the product path."""
    devices = [Device(f"t{tag}-{i:03d}", f"苏Z{tag[:8]}{i:03d}", f"pw-{tag}-{i}") for i in range(n)]
    register_test_devices(settings, [(d.device_id, d.vehicle_id, d.password) for d in devices])
    return devices


def only(devices: Iterable[Device]) -> list[str]:
    """Bridge options limiting it to these devices, so other traffic on the machine (load tests
    running at the same time) can neither slow the test nor overflow its broker queue."""
    return [arg for d in devices for arg in ("--only-device", d.device_id)]


def fix_json(device: Device, seq: int, *, ts: datetime | None = None, **overrides: object) -> bytes:
    """A valid telemetry fix v1 for ``device`` (fields overridable to make it invalid)."""
    when = ts or datetime.now(UTC) - timedelta(seconds=1)
    obj: dict[str, object] = {
        "v": 1,
        "device_id": device.device_id,
        "vehicle_id": device.vehicle_id,
        "ts": when.isoformat(),
        "lat": 32.04 + seq * 1e-5,
        "lon": 118.78,
        "speed_kmh": 36.0,
        "heading": 90,
        "acc": True,
        "seq": seq,
    }
    obj.update(overrides)
    return orjson.dumps(obj)


class DevicePublisher:
    """One terminal's MQTT 5 connection (its own credentials), publishing QoS 1."""

    def __init__(self, settings: Settings, device: Device) -> None:
        self.settings = settings
        self.device = device
        self.topic = settings.telemetry_topic(device.device_id)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"pub-{device.device_id}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(device.device_id, device.password)
        self.client.max_inflight_messages_set(100)
        self._pending: list[mqtt.MQTTMessageInfo] = []

    def __enter__(self) -> DevicePublisher:
        self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, payload: bytes) -> None:
        info = self.client.publish(self.topic, payload, qos=1)
        self._pending.append(info)
        if len(self._pending) >= 500:
            self.flush()

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker has acknowledged (PUBACK) everything published so far."""
        deadline = time.monotonic() + timeout_s
        for info in self._pending:
            info.wait_for_publish(max(deadline - time.monotonic(), 0.1))
            if not info.is_published():
                raise TimeoutError(f"{self.device.device_id}: broker did not acknowledge mid {info.mid}")
        self._pending.clear()


class BridgeProcess(ServiceProcess):
    """`fleetwatch ingest` as a child process (so it can be SIGKILLed), with its metrics endpoint."""

    def __init__(
        self,
        log: Path,
        *,
        instance: str,
        share_group: str,
        receive_maximum: int = 200,
        extra: Iterable[str] = (),
    ) -> None:
        # Port 0: the bridge binds a free port itself and logs it (a port probed free here could
        # be taken by some client's outgoing connection before the bridge binds it).
        argv = [
            "ingest", "--instance", instance, "--share-group", share_group,
            "--receive-maximum", str(receive_maximum), "--session-expiry", "300",
            "--log-interval", "2", "--leave", *extra, "--metrics-port", "0",
        ]  # fmt: skip
        super().__init__(log, argv, ready="bridge running", name=f"bridge {instance}")
        self.instance = instance
        self.port = 0

    def on_ready(self) -> None:
        self.port = int(re.findall(r"metrics: http://[\d.]+:(\d+)/metrics", self.log_text())[-1])

    def metrics(self) -> dict[str, float]:
        """Counters and gauges from the Prometheus endpoint (rejections summed per reason)."""
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in body.splitlines():
            m = re.match(r"fleetwatch_ingest_(\w+?)(?:_total)?\{([^}]*)\} (\S+)", line)
            if m:
                name, labels, value = m.groups()
                reason = re.search(r'reason="([^"]*)"', labels)
                out[f"{name}:{reason.group(1)}" if reason else name] = float(value)
        return out


def fixes_of(
    settings: Settings,
    topic: str,
    device_ids: set[str],
    since: dict[int, int] | None = None,
    bridge: str | None = None,
) -> list[tuple[int, int, Fix]]:
    """(partition, offset, fix) of every record from ``device_ids`` on ``topic``, in partition order.

    ``bridge`` keeps only records written by that bridge instance (its ``fw-bridge`` header), so
    another bridge running on the machine at the same time cannot blur duplicate counts.
    """
    out = []
    for record in read_topic(settings, topic, since=since, timeout_s=60):
        if bridge is not None and dict(record.headers or []).get("fw-bridge") != bridge.encode():
            continue
        obj = orjson.loads(record.value)
        if obj.get("device_id") in device_ids:
            out.append((record.partition, record.offset, parse_fix(obj, max_future=timedelta(days=1))))
    return out


def wait_for(predicate: object, timeout_s: float, what: str, interval_s: float = 1.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not reached within {timeout_s} s")


class Pacer(threading.Thread):
    """Publishes fixes round-robin over devices at a steady rate until stopped; counts what was sent."""

    def __init__(self, publishers: list[DevicePublisher], rate_per_s: float) -> None:
        super().__init__(name="pacer", daemon=True)
        self.publishers = publishers
        self.interval = 1.0 / rate_per_s
        self.sent: dict[str, int] = {p.device.device_id: 0 for p in publishers}
        self.stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            next_at = time.monotonic()
            while not self.stopped.is_set():
                for pub in self.publishers:
                    seq = self.sent[pub.device.device_id]
                    pub.publish(fix_json(pub.device, seq))
                    self.sent[pub.device.device_id] = seq + 1
                next_at += self.interval * len(self.publishers)
                time.sleep(max(0.0, next_at - time.monotonic()))
            for pub in self.publishers:
                pub.flush()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> dict[str, int]:
        self.stopped.set()
        self.join(120)
        if self.error is not None:
            raise self.error
        return dict(self.sent)
