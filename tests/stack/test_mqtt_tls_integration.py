"""MQTT over TLS on the real broker: the stack's CA is accepted, any other CA is refused, and the
simulator's own client publishes over TLS. Refusal texts are printed (README quotes them)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.settings import Settings
from fleetwatch.stack._mosquitto import paths
from registry import remove
from simulator import _mqtt
from tests.registry.helpers import register_test_devices

pytestmark = pytest.mark.integration


@pytest.fixture
def device(stack: Settings, unique: str) -> Iterator[tuple[str, str]]:
    device_id, password = f"tls-{unique}", secrets.token_urlsafe(16)
    register_test_devices(stack, [(device_id, f"TLS{unique}", password)])
    yield device_id, password
    remove(stack, [device_id])


def _pub(stack: Settings, cafile: Path, device: tuple[str, str], host: str = "127.0.0.1"
         ) -> subprocess.CompletedProcess[str]:
    device_id, password = device
    argv = ["mosquitto_pub", "-d", "-h", host, "-p", str(stack.mqtt_tls_port), "--cafile", str(cafile),
            "-i", device_id, "-u", device_id, "-P", password, "-q", "1", "-V", "mqttv5",
            "-t", stack.telemetry_topic(device_id), "-m", "{}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def _errors(proc: subprocess.CompletedProcess[str]) -> str:
    return " | ".join(line for line in (proc.stdout + proc.stderr).splitlines() if "rror" in line)


def test_mosquitto_pub_over_tls_wrong_ca_refused_right_ca_accepted(
    stack: Settings, device: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong-ca.crt"
    subprocess.run(["openssl", "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(tmp_path / "wrong-ca.key"), "-out", str(wrong), "-subj", "/CN=not ours"],
                   check=True, capture_output=True)
    refused = _pub(stack, wrong, device)
    assert refused.returncode != 0
    assert "certificate verify failed" in refused.stdout + refused.stderr
    accepted = _pub(stack, paths(stack).ca_cert, device)
    assert accepted.returncode == 0, accepted.stderr
    # A name the certificate does not carry is refused even with the right CA.
    misnamed = _pub(stack, paths(stack).ca_cert, device, host="127.0.0.2")
    assert misnamed.returncode != 0
    with capsys.disabled():
        print(f"\n  refused: mosquitto_pub --cafile <other CA>: {_errors(refused)}"
              f"\n  refused: mosquitto_pub to 127.0.0.2 (not in the certificate): {_errors(misnamed)}"
              f"\n  accepted: mosquitto_pub --cafile {paths(stack).ca_cert}: exit 0", end="")


def test_the_simulator_publishes_over_tls_and_a_fix_is_acknowledged(stack: Settings,
                                                                    device: tuple[str, str]) -> None:
    device_id, password = device
    tls = stack.model_copy(update={"mqtt_tls": True, "mqtt_ca_file": paths(stack).ca_cert})
    stats = _mqtt.publish(tls, [_mqtt.Outgoing(device_id, b"{}")], {device_id: password}, drain_timeout=15)
    assert (stats.sent, stats.acked, stats.failed) == (1, 1, 0)
    # Without the CA (system trust store) the same client is refused: nothing is acknowledged.
    untrusted = stack.model_copy(update={"mqtt_tls": True, "mqtt_ca_file": None})
    stats = _mqtt.publish(untrusted, [_mqtt.Outgoing(device_id, b"{}")], {device_id: password},
                          drain_timeout=5)
    assert stats.acked == 0


def test_the_plain_port_is_loopback_only_and_tls_has_the_same_accounts(stack: Settings) -> None:
    conf = paths(stack).conf.read_text()
    assert f"listener {stack.mqtt_port} 127.0.0.1\n" in conf
    assert f"listener {stack.mqtt_tls_port} {stack.mqtt_tls_bind}\n" in conf
    # One global auth plugin for both listeners, and no anonymous access anywhere.
    assert "per_listener_settings false" in conf and "allow_anonymous false" in conf
