"""notify without brokers: routing file errors, quiet hours, the rate limit, signatures, messages."""

from __future__ import annotations

import re
import urllib.parse
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fleetwatch.records import parse_alert
from notify.channels.dingtalk import signed_query
from notify.channels.webhook import sign
from notify.config import QuietHours, RoutingError, parse_routing
from notify.message import Notice
from notify.outbox import alert_payload
from notify.ratelimit import TokenBucket
from tests.notify.receivers import verify_dingtalk, verify_webhook

SHANGHAI = ZoneInfo("Asia/Shanghai")


def doc(**route: Any) -> dict[str, Any]:
    return {
        "channels": {
            "hook": {"type": "webhook", "url": "http://h/x", "secret_env": "S"},
            "mail": {"type": "email"},
        },
        "routes": [{"name": "r1", "org": "js.nj", "channels": ["hook"], **route}],
    }


def test_routes_match_org_and_subtree() -> None:
    routing = parse_routing(
        {**doc(), "routes": [{"name": "city", "org": "js.nj", "channels": ["hook"]},
                             {"name": "only", "org": "js", "include_suborgs": False, "channels": ["hook"]}]},
        env={"S": "x"},
    )  # fmt: skip
    assert [r.name for r in routing.for_org("js.nj.u01", ("js.nj", "js"))] == ["city"]
    assert [r.name for r in routing.for_org("js", ())] == ["only"]
    assert [r.name for r in routing.for_escalation("js")] == ["only"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channels": ["nope"]}, "routes[0].channels: 'nope' is not defined under channels"),
        ({"min_severity": "orange"}, "routes[0].min_severity: 'orange' is not yellow or red"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "routes[0].quiet_hours.start: expected HH:MM"),
        ({"channels": ["mail"]}, "routes[0].managers: an e-mail channel needs managers with an email"),
        ({"name": "a/b"}, "routes[0].name: 'a/b': use letters"),
    ],
)
def test_routing_errors_name_the_entry(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingError, match=re.escape(message)):
        parse_routing(doc(**change), source="notify.yaml", env={"S": "x"})


def test_missing_secret_is_refused_without_showing_it() -> None:
    with pytest.raises(
        RoutingError, match=re.escape("channels.hook.secret_env: environment variable S is not set")
    ):
        parse_routing(doc(), env={})


def test_quiet_hours_overnight_and_same_day() -> None:
    night = QuietHours(time(22), time(7))
    assert night.release_at(datetime(2026, 11, 27, 23, 30, tzinfo=SHANGHAI), SHANGHAI) == datetime(
        2026, 11, 28, 7, 0, tzinfo=SHANGHAI
    )
    assert night.release_at(datetime(2026, 11, 28, 6, 0, tzinfo=SHANGHAI), SHANGHAI) == datetime(
        2026, 11, 28, 7, 0, tzinfo=SHANGHAI
    )
    assert night.release_at(datetime(2026, 11, 28, 7, 0, tzinfo=SHANGHAI), SHANGHAI) is None
    lunch = QuietHours(time(12), time(13, 30))
    assert lunch.release_at(datetime(2026, 11, 28, 12, 15, tzinfo=SHANGHAI), SHANGHAI) == datetime(
        2026, 11, 28, 13, 30, tzinfo=SHANGHAI
    )
    assert lunch.release_at(datetime(2026, 11, 28, 11, 59, tzinfo=SHANGHAI), SHANGHAI) is None


def test_token_bucket_allows_a_minutes_worth_then_refills() -> None:
    now = [0.0]
    bucket = TokenBucket(20, clock=lambda: now[0])
    assert sum(bucket.try_take() for _ in range(25)) == 20
    now[0] += 3.0  # 20/min = one token per 3 s
    assert bucket.try_take() and not bucket.try_take()


def test_webhook_signature_verifies_and_tampering_fails() -> None:
    body = b'{"delivery_id": 5, "alert": {"severity": "yellow"}}'
    ts = str(int(datetime.now().timestamp()))
    headers = {"x-fleetwatch-timestamp": ts, "x-fleetwatch-signature": sign("k", ts, body),
               "x-fleetwatch-delivery": "5"}  # fmt: skip
    assert verify_webhook("k", headers, body, set()) is None
    assert verify_webhook("k", headers, body.replace(b"yellow", b"red"), set()) == "bad signature"
    assert verify_webhook("other", headers, body, set()) == "bad signature"


def test_dingtalk_signed_query_matches_the_documented_scheme() -> None:
    query = urllib.parse.parse_qs(signed_query("SECabc", int(datetime.now().timestamp() * 1000)))
    assert verify_dingtalk("SECabc", query) is None
    assert verify_dingtalk("SECxyz", query) == "sign mismatch"


def test_alert_payload_renders_the_alert() -> None:
    record = {"v": 1, "alert_id": "a1", "type": "private_destination", "vehicle_id": "苏A12345",
              "org": "js.nj",
              "start": "2026-11-27T21:06:00+08:00", "lat": 32.04, "lon": 118.78,
              "raised_at": "2026-11-27T21:16:00+08:00", "severity": "red"}  # fmt: skip
    payload = alert_payload(parse_alert(record), 4)
    assert payload["due"].startswith("2026-11-30") and payload["revision"] == 4
    notice = Notice(9, "r1/hook", "escalation", {**payload, "escalated_to": "js"})
    assert "OVERDUE" in notice.title and "苏A12345" in notice.text() and "escalated to: js" in notice.text()
    assert "<table>" in notice.html() and "#d93025" in notice.html()
    del record["severity"]
    assert alert_payload(parse_alert(record), 1)["severity"] == "yellow"  # written before v1 had one
