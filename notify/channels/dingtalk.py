"""DingTalk group robot (自定义机器人): markdown message, @-mentions, and its signed ("加签") mode.

Signed mode as DingTalk documents it: ``timestamp`` = now in milliseconds; string to sign =
``timestamp + "\\n" + secret``; ``sign`` = URL-encoded Base64 of HMAC-SHA256 with the secret as the
key; both are appended to the webhook URL as query parameters. DingTalk refuses a timestamp more
than an hour off and limits each robot to 20 messages a minute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from dataclasses import dataclass

from fleetwatch.settings import Settings
from notify.channels.http import check_robot_answer, post_json
from notify.config import ChannelSpec, Route
from notify.message import Notice


def signed_query(secret: str, timestamp_ms: int) -> str:
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return f"timestamp={timestamp_ms}&sign={urllib.parse.quote_plus(base64.b64encode(digest))}"


@dataclass
class DingTalkChannel:
    spec: ChannelSpec
    settings: Settings

    def send(self, notice: Notice, route: Route) -> None:
        assert self.spec.url is not None
        mobiles = [m.mobile for m in route.managers if m.mobile]
        text = notice.markdown()
        if mobiles:  # DingTalk highlights a mention only if the text carries @<mobile> too
            text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        body = {
            "msgtype": "markdown",
            "markdown": {"title": notice.title, "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }
        url = self.spec.url
        if self.spec.secret:
            url += ("&" if "?" in url else "?") + signed_query(self.spec.secret, int(time.time() * 1000))
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        _, answer = post_json(url, raw, {}, self.settings.notify_http_timeout_seconds)
        check_robot_answer(url, answer)

    def close(self) -> None:
        pass
