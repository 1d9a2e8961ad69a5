"""A JSON POST with the stdlib (no new dependency), shared by the webhook and the robots."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from notify.channels import DeliveryError


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} from {_where(url)}: {exc.read()[:200]!r}") from None
    except urllib.error.URLError as exc:
        raise DeliveryError(f"cannot reach {_where(url)}: {exc.reason}") from None


def _where(url: str) -> str:
    """The URL without its query (robots carry their access token there)."""
    return url.split("?", 1)[0]


def check_robot_answer(url: str, answer: bytes) -> None:
    """DingTalk and WeCom answer HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}``; anything else failed."""
    try:
        doc: Any = json.loads(answer)
    except ValueError:
        raise DeliveryError(f"{_where(url)} answered non-JSON: {answer[:200]!r}") from None
    if not isinstance(doc, dict) or doc.get("errcode") != 0:
        raise DeliveryError(f"{_where(url)} refused the message: {doc!r}")
