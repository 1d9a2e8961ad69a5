"""Publishing through real Mosquitto: every fix arrives, and a broker restart mid-run loses none."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleetwatch.settings import Settings
from registry import remove
from simulator import _mqtt
from simulator._dataset import Dataset, build_scenarios
from simulator._faults import FaultConfig
from simulator.cli import register_world
from tests.ports import free_port
from tests.registry.helpers import register_test_devices

pytestmark = pytest.mark.integration


@dataclass
class Collector:
    """A svc-admin subscriber with a persistent session that records (device_id, seq) it sees."""

    settings: Settings
    prefix: str
    client_id: str
    seen: set[tuple[str, int]] = field(default_factory=set)
    messages: int = 0

    def start(self) -> None:
        self.ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(
            self.settings.mqtt_admin_user, self.settings.secret("mqtt_admin_password")
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.ready.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect_async(
            self.settings.mqtt_host, self.settings.mqtt_port, clean_start=False, properties=props
        )
        self.client.loop_start()
        assert self.ready.wait(15), "subscriber did not get its SUBACK"

    def _on_connect(self, client: mqtt.Client, _u: object, flags: object, reason: object, _p: object) -> None:
        if not getattr(flags, "session_present", False):
            client.subscribe(self.settings.telemetry_topic("+"), qos=1)
        else:
            self.ready.set()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages += 1
        try:
            obj = orjson.loads(msg.payload)
            key = (obj["device_id"], obj["seq"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return  # malformed on purpose
        if isinstance(key[0], str) and key[0].startswith(self.prefix) and isinstance(key[1], int):
            self.seen.add(key)

    def wait_for(self, expected: set[tuple[str, int]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not expected <= self.seen:
            time.sleep(0.1)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def expected_keys(ds: Dataset) -> set[tuple[str, int]]:
    return {(v.device_id, m.seq) for v, m in ds.messages() if m.kind == "fix"}


def outgoing(ds: Dataset) -> Iterator[_mqtt.Outgoing]:
    for v, m in ds.messages():
        yield _mqtt.Outgoing(v.device_id, m.payload)


def test_publishing_a_scenario_delivers_every_fix(stack: Settings, unique: str) -> None:
    ns = f"T{unique[:6]}"
    faults = FaultConfig(duplicates=0.05, malformed=0.01)
    ds = build_scenarios(["workday", "offline_late_upload", "power_cut"], seed=4, faults=faults, namespace=ns)
    register_world(stack, ds.world)
    collector = Collector(stack, ns, f"fw-test-sub-{unique}")
    collector.start()
    try:
        stats = _mqtt.publish(stack, outgoing(ds), {v.device_id: v.password for v in ds.world.vehicles})
        want = expected_keys(ds)
        collector.wait_for(want, 30)
    finally:
        collector.stop()
        remove(stack, [v.device_id for v in ds.world.vehicles])
    assert stats.sent == ds.count() and stats.acked == stats.sent and stats.failed == 0
    assert stats.connections == len(ds.world.vehicles)  # one connection per device, own credentials
    assert collector.seen == want
    assert collector.messages >= ds.count()  # duplicates and garbage went through too


def test_a_device_cannot_publish_as_another(stack: Settings, unique: str) -> None:
    ds = build_scenarios(["night", "workday"], seed=4, namespace=f"X{unique[:6]}")
    a, b = ds.world.vehicles
    register_world(stack, ds.world)
    collector = Collector(stack, f"X{unique[:6]}", f"fw-test-sub-{unique}")
    collector.start()
    conn = _mqtt.Connection(stack, f"fw-test-{a.device_id}", a.device_id, a.password)
    try:
        assert conn.connected.wait(10)
        payload = ds.streams[1][0].payload  # b's fix, on b's topic, with a's credentials
        conn.publish(stack.telemetry_topic(b.device_id), payload)
        conn.publish(stack.telemetry_topic(a.device_id), ds.streams[0][0].payload)
        collector.wait_for({(a.device_id, 1)}, 10)
        time.sleep(0.5)
    finally:
        conn.close()
        collector.stop()
        remove(stack, [v.device_id for v in ds.world.vehicles])
    assert (a.device_id, 1) in collector.seen
    assert (b.device_id, 1) not in collector.seen


# --------------------------------------------------------------------------------------------
# broker restart: a private Mosquitto this test starts and stops itself (the shared stack
# broker belongs to everyone else's running tests, so it is not ours to kill)
# --------------------------------------------------------------------------------------------


@dataclass
class PrivateBroker:
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.root / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.root / "mosquitto.conf")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(
            f"private mosquitto did not listen on {self.port}: {(self.root / 'mosquitto.log').read_text()}"
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: mosquitto writes its persistence file on the way out
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_broker(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[PrivateBroker, Settings]]:
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        request.getfixturevalue("stack")  # `stack up` installs the Debian package
    port = free_port()
    (tmp_path / "data").mkdir()
    (tmp_path / "secrets").mkdir()
    admin_password = "test-admin-" + str(port)
    (tmp_path / "secrets" / "mqtt_admin_password").write_text(admin_password)
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\n"
        "user root\n"
        "persistence true\n"
        f"persistence_location {tmp_path / 'data'}/\n"
        "autosave_interval 30\n"
        "max_queued_messages 100000\n"
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\n"
    )
    settings = Settings(mqtt_port=port, stack_dir=tmp_path)
    broker = PrivateBroker(tmp_path, port)
    yield broker, settings
    broker.stop()


def _write_passwords(path: Path, accounts: dict[str, str]) -> None:
    path.write_text("".join(f"{u}:{p}\n" for u, p in accounts.items()))
    subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True, capture_output=True)


def test_broker_restart_mid_run_loses_no_fix(
    private_broker: tuple[PrivateBroker, Settings], unique: str
) -> None:
    broker, settings = private_broker
    ds = build_scenarios(["workday", "night", "power_cut"], seed=5, namespace=f"R{unique[:6]}")
    devices = {v.device_id: v.password for v in ds.world.vehicles}
    _write_passwords(broker.root / "passwd", {"svc-admin": settings.secret("mqtt_admin_password"), **devices})
    broker.start()
    collector = Collector(settings, f"R{unique[:6]}", f"fw-test-sub-{unique}")
    collector.start()
    result: dict[str, _mqtt.PublishStats] = {}
    total = ds.count()
    rate = total / 6.0  # about six seconds of publishing; the broker is down for ~2 of them

    def run() -> None:
        result["stats"] = _mqtt.publish(settings, outgoing(ds), devices, rate=rate, drain_timeout=60)

    publisher = threading.Thread(target=run)
    publisher.start()
    try:
        time.sleep(2.0)
        before = len(collector.seen)
        broker.stop()
        time.sleep(2.0)
        broker.start()
        publisher.join(90)
        collector.wait_for(expected_keys(ds), 30)
    finally:
        collector.stop()
    stats = result["stats"]
    assert 0 < before < total  # the restart really happened mid-run
    assert stats.sent == total and stats.acked == total and stats.failed == 0
    assert collector.seen == expected_keys(ds)


def test_send_and_replay_commands_reach_the_broker(stack: Settings, unique: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fleetwatch.cli import app
    device, plate, password = f"S{unique[:6]}", "苏A77777", f"pw-{unique}"
    register_test_devices(stack, [(device, plate, password)])
    collector = Collector(stack, device, f"fw-test-sub-{unique}")
    collector.start()
    track = tmp_path / "track.csv"
    track.write_text(
        "ts,lat,lon\n"
        + "".join(f"2026-11-25T09:00:{s:02d}+08:00,{32.04 + s * 1e-4:.6f},118.78\n" for s in range(0, 60, 10))
    )
    runner = CliRunner()
    try:
        sent = runner.invoke(
            app,
            [
                "simulate",
                "send",
                "--device",
                device,
                "--vehicle",
                plate,
                "--password",
                password,
                "--seq",
                "999",
            ],
        )
        wrong = runner.invoke(
            app,
            [
                "simulate",
                "send",
                "--device",
                device,
                "--vehicle",
                plate,
                "--password",
                "wrong",
                "--seq",
                "998",
            ],
        )
        replayed = runner.invoke(
            app,
            [
                "simulate",
                "replay",
                str(track),
                "--device",
                device,
                "--vehicle",
                plate,
                "--password",
                password,
            ],
        )
        collector.wait_for({(device, 999), *((device, i) for i in range(1, 7))}, 15)
    finally:
        collector.stop()
        remove(stack, [device])
    assert sent.exit_code == 0, sent.output
    assert wrong.exit_code != 0
    assert replayed.exit_code == 0, replayed.output
    assert collector.seen == {(device, 999), *((device, i) for i in range(1, 7))}
