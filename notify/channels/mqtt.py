"""The mobile app's feed: the notice as JSON on ``<prefix>/<org>`` (QoS 1) as the svc-notifier account."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleetwatch.mqtt_conn import configure_tls, mqtt_address
from fleetwatch.settings import Settings
from notify.channels import DeliveryError
from notify.config import ChannelSpec, Route
from notify.message import Notice


@dataclass
class MqttChannel:
    spec: ChannelSpec
    settings: Settings
    _client: mqtt.Client | None = field(default=None, init=False)

    def topic(self, route: Route) -> str:
        return f"{self.settings.mqtt_notify_prefix}/{route.org}"

    def _connected(self) -> mqtt.Client:
        if self._client is not None and self._client.is_connected():
            return self._client
        self.close()
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fw-notify-{self.spec.name}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(s.mqtt_notifier_user, s.secret("mqtt_notifier_password"))
        configure_tls(client, s)
        try:
            client.connect(*mqtt_address(s), keepalive=30)
        except OSError as exc:
            host, port = mqtt_address(s)
            raise DeliveryError(f"MQTT {host}:{port}: {exc}") from None
        client.loop_start()
        self._client = client
        return client

    def send(self, notice: Notice, route: Route) -> None:
        client = self._connected()
        body = json.dumps(notice.document(), ensure_ascii=False, sort_keys=True).encode("utf-8")
        info = client.publish(self.topic(route), body, qos=1)
        try:
            info.wait_for_publish(timeout=self.settings.notify_http_timeout_seconds)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"MQTT publish to {self.topic(route)}: {exc}") from None
        if not info.is_published():
            raise DeliveryError(f"MQTT publish to {self.topic(route)} not acknowledged (rc {info.rc})")

    def close(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None
