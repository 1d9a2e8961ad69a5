"""Generic webhook: the notice as JSON, signed with HMAC-SHA256 over the timestamp and the body.

Headers: ``X-Fleetwatch-Timestamp`` (Unix seconds), ``X-Fleetwatch-Delivery`` (delivery id) and
``X-Fleetwatch-Signature: sha256=<hex>`` where the hex digest is
HMAC-SHA256(key = shared secret, message = timestamp + "." + raw body bytes). A receiver recomputes
it, compares in constant time, refuses timestamps more than 5 minutes off its clock, and remembers
delivery ids it has seen to refuse replays (the id is inside the signed body too).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from fleetwatch.settings import Settings
from notify.channels.http import post_json
from notify.config import ChannelSpec, Route
from notify.message import Notice

TIMESTAMP_HEADER = "X-Fleetwatch-Timestamp"
SIGNATURE_HEADER = "X-Fleetwatch-Signature"
DELIVERY_HEADER = "X-Fleetwatch-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


@dataclass
class WebhookChannel:
    spec: ChannelSpec
    settings: Settings

    def send(self, notice: Notice, route: Route) -> None:
        assert self.spec.url is not None and self.spec.secret is not None
        body = json.dumps(notice.document(), ensure_ascii=False, sort_keys=True).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: str(notice.delivery_id),
            SIGNATURE_HEADER: sign(self.spec.secret, timestamp, body),
        }
        post_json(self.spec.url, body, headers, self.settings.notify_http_timeout_seconds)

    def close(self) -> None:
        pass
