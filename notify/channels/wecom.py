"""WeCom (企业微信) group robot: a markdown message to the robot's webhook (the key is in its URL)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fleetwatch.settings import Settings
from notify.channels.http import check_robot_answer, post_json
from notify.config import ChannelSpec, Route
from notify.message import Notice

#: WeCom refuses markdown content longer than 4096 bytes.
MAX_CONTENT_BYTES = 4096


@dataclass
class WeComChannel:
    spec: ChannelSpec
    settings: Settings

    def send(self, notice: Notice, route: Route) -> None:
        assert self.spec.url is not None
        content = notice.markdown().encode("utf-8")[:MAX_CONTENT_BYTES].decode("utf-8", "ignore")
        body = {"msgtype": "markdown", "markdown": {"content": content}}
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        _, answer = post_json(self.spec.url, raw, {}, self.settings.notify_http_timeout_seconds)
        check_robot_answer(self.spec.url, answer)

    def close(self) -> None:
        pass
