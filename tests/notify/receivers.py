"""Real receivers for the notify tests: an HTTP server playing webhook / DingTalk / WeCom endpoints and
an SMTP server (aiosmtpd). Each checks what the sender must do exactly as the scheme is documented
(README "Webhook signature"; DingTalk's and WeCom's robot docs), written here without notify's code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.ports import free_port

#: A webhook receiver accepts timestamps at most this far from its own clock.
WEBHOOK_TOLERANCE_S = 300
DINGTALK_TOLERANCE_MS = 3_600_000


@dataclass
class Endpoint:
    kind: str  # webhook | dingtalk | wecom
    secret: str | None = None
    key: str | None = None
    #: Answer the next N requests with a failure (HTTP 500, or errcode for robots) before accepting.
    fail_next: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    requests: int = 0
    seen_deliveries: set[str] = field(default_factory=set)
    #: (headers, body) of every accepted request, to replay or tamper with.
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


def verify_webhook(secret: str, headers: dict[str, str], body: bytes, seen: set[str]) -> str | None:
    """None if genuine, else why not: HMAC-SHA256(secret, timestamp + "." + body), fresh, not replayed."""
    timestamp = headers.get("x-fleetwatch-timestamp", "")
    signature = headers.get("x-fleetwatch-signature", "")
    delivery = headers.get("x-fleetwatch-delivery", "")
    if not timestamp.isdigit():
        return "no timestamp"
    if abs(time.time() - int(timestamp)) > WEBHOOK_TOLERANCE_S:
        return "stale timestamp"
    expected = (
        "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    if not hmac.compare_digest(expected, signature):
        return "bad signature"
    if json.loads(body).get("delivery_id") != int(delivery or -1):
        return "delivery header does not match the signed body"
    if delivery in seen:
        return "replayed delivery"
    seen.add(delivery)
    return None


def verify_dingtalk(secret: str, query: dict[str, list[str]]) -> str | None:
    """DingTalk signed mode: sign = Base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)), URL-encoded."""
    timestamp = (query.get("timestamp") or [""])[0]
    sign = (query.get("sign") or [""])[0]  # parse_qs has already URL-decoded it
    if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > DINGTALK_TOLERANCE_MS:
        return "timestamp missing or more than an hour off"
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), sign):
        return "sign mismatch"
    return None


class Receivers:
    """A ThreadingHTTPServer on 127.0.0.1 with endpoints at /<name>."""

    def __init__(self) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.lock = threading.Lock()
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, answer = receivers.handle(
                    url.path.strip("/"),
                    urllib.parse.parse_qs(url.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, name: str, endpoint: Endpoint) -> str:
        self.endpoints[name] = endpoint
        suffix = f"?access_token={endpoint.key}" if endpoint.kind == "dingtalk" else ""
        suffix = f"?key={endpoint.key}" if endpoint.kind == "wecom" else suffix
        return f"{self.base}/{name}{suffix}"

    def handle(
        self, name: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            ep = self.endpoints.get(name)
            if ep is None:
                return 404, {"error": "no such endpoint"}
            ep.requests += 1
            if ep.fail_next > 0:
                ep.fail_next -= 1
                if ep.kind == "webhook":
                    return 500, {"error": "receiver down (test)"}
                return 200, {"errcode": 310000, "errmsg": "test failure"}  # robots fail in-band
            why = self._check(ep, query, headers, body)
            if why is not None:
                ep.rejected.append(why)
                if ep.kind == "webhook":
                    return 401, {"error": why}
                return 200, {"errcode": 310000, "errmsg": why}
            ep.accepted.append(json.loads(body))
            ep.raw.append((headers, body))
            return 200, {"errcode": 0, "errmsg": "ok"}

    @staticmethod
    def _check(ep: Endpoint, query: dict[str, list[str]], headers: dict[str, str], body: bytes) -> str | None:
        if ep.kind == "webhook":
            assert ep.secret
            return verify_webhook(ep.secret, headers, body, ep.seen_deliveries)
        doc = json.loads(body)
        if ep.kind == "dingtalk":
            if (query.get("access_token") or [""])[0] != ep.key:
                return "wrong access_token"
            if ep.secret and (why := verify_dingtalk(ep.secret, query)):
                return why
            if doc.get("msgtype") != "markdown" or not {"title", "text"} <= set(doc.get("markdown", {})):
                return "not a DingTalk markdown message"
            return None
        if (query.get("key") or [""])[0] != ep.key:
            return "wrong key"
        content = doc.get("markdown", {}).get("content")
        if doc.get("msgtype") != "markdown" or not isinstance(content, str):
            return "not a WeCom markdown message"
        if len(content.encode()) > 4096:
            return "content over 4096 bytes"
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        message["X-Test-Rcpt"] = ",".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on a free local port; ``messages`` are the parsed e-mails received."""

    def __init__(self) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def messages(self) -> list[Message]:
        return self.inbox.messages

    def close(self) -> None:
        self.controller.stop()
