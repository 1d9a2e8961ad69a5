"""A device account cannot join the bridge's shared group (or read anything): refused at SUBSCRIBE.

With Mosquitto's acl_file such a SUBSCRIBE was accepted and the broker then dropped the group's
share of messages routed to the intruder (measured: 10 of 20). Now the broker refuses it with a
reason code and every fix still reaches Kafka.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleetwatch import topics
from fleetwatch.kafka_io import end_offsets
from fleetwatch.settings import Settings
from ingest.bridge import SHARE_GROUP
from tests.ingest.helpers import (
    BridgeProcess,
    Device,
    DevicePublisher,
    fix_json,
    fixes_of,
    only,
    register_devices,
    wait_for,
)

pytestmark = pytest.mark.integration

FIXES = 1000


class Intruder:
    """A device's own account, connected with a persistent session, trying to subscribe."""

    def __init__(self, settings: Settings, device: Device) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"intruder-{device.device_id}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(device.device_id, device.password)
        self.granted: dict[int, list[ReasonCode]] = {}
        self.received = 0
        self._acked = threading.Condition()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30, clean_start=False)
        self.client.loop_start()

    def _on_subscribe(
        self, _c: object, _u: object, mid: int, codes: list[ReasonCode], _p: Properties | None
    ) -> None:
        with self._acked:
            self.granted[mid] = codes
            self._acked.notify_all()

    def _on_message(self, _c: object, _u: object, _msg: mqtt.MQTTMessage) -> None:
        self.received += 1

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self.granted, 10), f"no SUBACK for {topic}"
            (code,) = self.granted[mid]
            return code

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_device_subscriptions_are_refused_and_no_fix_is_lost(
    stack: Settings, unique: str, bridges: Callable[..., BridgeProcess]
) -> None:
    intruder_device, honest = register_devices(stack, unique, 2)
    group = f"sub-{unique}"
    since = end_offsets(stack, topics.TELEMETRY)
    bridge = bridges(group, extra=only([honest]))  # its share group is named `group`
    prefix = stack.mqtt_topic_prefix
    attempts = [
        f"$share/{group}/{prefix}/{honest.device_id}",  # exactly the bridge's filter for another device
        f"$share/{group}/{prefix}/+",
        f"$share/{SHARE_GROUP}/{prefix}/+",  # the production group
        "#",
        f"{prefix}/{honest.device_id}",
    ]
    with bridge:
        intruder = Intruder(stack, intruder_device)
        try:
            codes = {topic: intruder.subscribe(topic) for topic in attempts}
            with DevicePublisher(stack, honest) as pub:
                for seq in range(FIXES):
                    pub.publish(fix_json(honest, seq))
            wait_for(lambda: bridge.metrics().get("produced", 0) >= FIXES, 60, "all fixes produced")
        finally:
            intruder.close()

    for topic, code in codes.items():
        assert code.is_failure, f"{intruder_device.device_id} was allowed to subscribe to {topic}: {code}"
        assert code.value == 135, (topic, code)  # MQTT 5: Not authorized
    assert intruder.received == 0
    got = fixes_of(stack, topics.TELEMETRY, {honest.device_id}, since=since)
    assert len({fix.seq for *_, fix in got}) == FIXES
    print(f"SUBSCRIBE refused {len(codes)}/{len(codes)} (reason 135); {FIXES} fixes sent, "
          f"{len({fix.seq for *_, fix in got})} distinct seqs in Kafka")
