"""Fixtures for notify: the real receivers, an org pair in the registry, a scratch alerts topic."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleetwatch.records import Alert, AlertType, format_timestamp
from fleetwatch.settings import Settings
from store.db import connect
from tests.notify.receivers import Receivers, SmtpServer


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    r = Receivers()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    s = SmtpServer()
    yield s
    s.close()


@dataclass
class Orgs:
    parent: str
    child: str


@pytest.fixture
def orgs(database: Settings, unique: str) -> Orgs:
    parent, child = f"t{unique}", f"t{unique}.unit"
    with connect(database) as conn:
        conn.execute("INSERT INTO orgs (org_id, name) VALUES (%s, 'test city')", (parent,))
        conn.execute(
            "INSERT INTO orgs (org_id, name, parent_id) VALUES (%s, 'test unit', %s)", (child, parent)
        )
    return Orgs(parent, child)


def make_alert(
    org: str,
    vehicle: str,
    start: datetime,
    *,
    end: datetime | None = None,
    alert_type: AlertType = AlertType.PRIVATE_DESTINATION,
) -> Alert:
    return Alert.new(
        alert_type,
        vehicle,
        org,
        start,
        end,
        32.05,
        118.78,
        raised_at=start + timedelta(minutes=10),
        details={"zone": "KTV"},
    )


def envelope(alert: Alert, revision: int, severity: str = "yellow", *, retract: str | None = None) -> bytes:
    doc: dict[str, Any] = {
        "v": 1,
        "kind": "alert",
        "op": "retract" if retract else "upsert",
        "id": alert.alert_id,
        "vehicle_id": alert.vehicle_id,
        "revision": revision,
        "emitted_at": format_timestamp(datetime.now(UTC)),
        "record": {**alert.to_dict(), "severity": severity},
    }
    if retract:
        doc["reason"] = retract
    return orjson.dumps(doc)


class MqttInbox:
    """Subscribed (as the admin account) to the notify feed of every org under a prefix."""

    def __init__(self, settings: Settings, topic_filter: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fw-test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(settings.mqtt_admin_user, settings.secret("mqtt_admin_password"))
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, orjson.loads(m.payload)))
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        assert self.ready.wait(10), "MQTT subscription not confirmed"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
