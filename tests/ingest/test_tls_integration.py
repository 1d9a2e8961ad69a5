"""Terminals over TLS, the bridge over TLS as its own Kafka principal: every acknowledged fix lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets
from fleetwatch.settings import Settings
from fleetwatch.stack._mosquitto import paths
from simulator import _mqtt
from tests.ingest.helpers import BridgeProcess, fix_json, fixes_of, only, register_devices, wait_for

pytestmark = pytest.mark.integration

FIXES_PER_DEVICE = 20


def test_fixes_over_tls_through_a_bridge_running_as_svc_bridge(
    stack: Settings, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = register_devices(stack, unique, 3)
    ca = paths(stack).ca_cert
    # The bridge child: its own Kafka principal (not the tests' admin) and MQTT over TLS.
    monkeypatch.delenv("FLEETWATCH_KAFKA_AS")
    monkeypatch.setenv("FLEETWATCH_MQTT_TLS", "1")
    monkeypatch.setenv("FLEETWATCH_MQTT_CA_FILE", str(ca))
    since = end_offsets(stack, topics.TELEMETRY)
    instance = f"tls-{unique}"
    with BridgeProcess(tmp_path / "bridge.log", instance=instance, share_group=f"tls{unique}",
                       extra=only(devices)):
        terminals = stack.model_copy(update={"mqtt_tls": True, "mqtt_ca_file": ca})
        messages = [_mqtt.Outgoing(d.device_id, fix_json(d, seq))
                    for seq in range(FIXES_PER_DEVICE) for d in devices]
        stats = _mqtt.publish(terminals, messages, {d.device_id: d.password for d in devices},
                              drain_timeout=60)
        assert (stats.sent, stats.acked, stats.failed) == (len(messages), len(messages), 0)
        ids = {d.device_id for d in devices}
        wait_for(lambda: len(fixes_of(stack, topics.TELEMETRY, ids, since, bridge=instance)) >= len(messages),
                 90, "fixes in Kafka")
    landed = fixes_of(stack, topics.TELEMETRY, ids, since, bridge=instance)
    assert sorted((f.device_id, f.seq) for _, _, f in landed) == sorted(
        (d.device_id, seq) for seq in range(FIXES_PER_DEVICE) for d in devices)
    log = (tmp_path / "bridge.log").read_text(errors="replace")
    assert "AuthorizationFailed" not in log and "SSL" not in log
