"""notify against real receivers (HTTP, aiosmtpd), the real Mosquitto, Kafka and the database."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from fleetwatch.kafka_io import read_topic
from fleetwatch.settings import Settings
from notify.config import Routing, parse_routing
from notify.runner import Notifier
from store.db import connect
from tests.notify.conftest import MqttInbox, Orgs, envelope, make_alert
from tests.notify.receivers import Endpoint, Receivers, SmtpServer
from tests.sink.helpers import produce, scratch_topic

pytestmark = pytest.mark.integration
SHANGHAI = ZoneInfo("Asia/Shanghai")


def routing_for(orgs: Orgs, receivers: Receivers, **route_extra: Any) -> tuple[Routing, dict[str, Endpoint]]:
    """Unit route: webhook + DingTalk (signed) + WeCom + e-mail + MQTT; city route: webhook + e-mail."""
    eps = {
        "hook": Endpoint("webhook", secret="unit-hook-secret"),
        "ding": Endpoint("dingtalk", secret="SEC-ding-secret", key="ding-token"),
        "wecom": Endpoint("wecom", key="wecom-key"),
        "cityhook": Endpoint("webhook", secret="city-hook-secret"),
    }
    urls = {name: receivers.add(f"{orgs.child}-{name}", ep) for name, ep in eps.items()}
    doc = {
        "channels": {
            "hook": {"type": "webhook", "url": urls["hook"], "secret_env": "HOOK_SECRET"},
            "ding": {"type": "dingtalk", "url": urls["ding"], "secret_env": "DING_SECRET"},
            "wecom": {"type": "wecom", "url": urls["wecom"]},
            "mail": {"type": "email"},
            "app": {"type": "mqtt"},
            "cityhook": {"type": "webhook", "url": urls["cityhook"], "secret_env": "CITY_SECRET"},
        },
        "routes": [
            {
                "name": f"{orgs.child}-managers",
                "org": orgs.child,
                "channels": ["hook", "ding", "wecom", "mail", "app"],
                "managers": [{"name": "Wang", "email": "wang@unit.example", "mobile": "13800000001"}],
                **route_extra,
            },
            {
                "name": f"{orgs.parent}-supervisors",
                "org": orgs.parent,
                "include_suborgs": False,
                "channels": ["cityhook", "mail"],
                "managers": [{"name": "Li", "email": "li@city.example"}],
            },
        ],
    }
    env = {
        "HOOK_SECRET": "unit-hook-secret",
        "DING_SECRET": "SEC-ding-secret",
        "CITY_SECRET": "city-hook-secret",
    }
    return parse_routing(doc, env=env), eps


@pytest.fixture
def settings(database: Settings, smtp: SmtpServer) -> Settings:
    return database.model_copy(
        update={
            "smtp_port": smtp.port,
            "notify_backoff_seconds": 0.2,
            "notify_escalate_every_seconds": 3600.0,
        }
    )


def run_notifier(settings: Settings, routing: Routing, topic: str, group: str, **kw: Any) -> Notifier:
    notifier = Notifier(settings, routing, **kw)
    with connect(settings) as conn:
        notifier.run(conn, topic=topic, group=group, idle_exit_s=2.5)  # type: ignore[arg-type]
    return notifier


def deliveries(settings: Settings, alert_id: str) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(
            "SELECT route, purpose, revision, status, attempts, last_error FROM notify_deliveries"
            " WHERE alert_id = %s ORDER BY route",
            (alert_id,),
        ).fetchall()


@pytest.fixture
def mqtt_inbox(settings: Settings, orgs: Orgs) -> Iterator[MqttInbox]:
    inbox = MqttInbox(settings, f"{settings.mqtt_notify_prefix}/{orgs.parent}/#")
    inbox_all = MqttInbox(settings, f"{settings.mqtt_notify_prefix}/{orgs.child}")
    yield inbox_all
    inbox.close()
    inbox_all.close()


def test_alert_twice_on_the_topic_yields_one_message_per_route(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, mqtt_inbox: MqttInbox, unique: str
) -> None:
    routing, eps = routing_for(orgs, receivers)
    topic = scratch_topic(settings, f"fw-test-alerts-{unique}")
    alert = make_alert(orgs.child, f"苏A{unique[:5]}", datetime(2026, 11, 27, 13, 10, tzinfo=UTC))
    later = alert.with_end(alert.start + timedelta(minutes=95))
    # The same revision twice (redelivery), then a later revision that only adds the end.
    produce(
        settings, topic, [(b"k", envelope(alert, 7)), (b"k", envelope(alert, 7)), (b"k", envelope(later, 9))]
    )
    run_notifier(settings, routing, topic, f"g-{unique}")
    # A notifier that lost its offsets reads everything again: nothing new goes out.
    run_notifier(settings, routing, topic, f"g2-{unique}")
    time.sleep(0.5)  # MQTT QoS 1 delivery to the subscriber is asynchronous

    assert [len(eps[n].accepted) for n in ("hook", "ding", "wecom", "cityhook")] == [1, 1, 1, 0]
    assert eps["hook"].accepted[0]["alert"]["alert_id"] == alert.alert_id
    assert eps["hook"].rejected == [] and eps["ding"].rejected == [] and eps["wecom"].rejected == []
    assert "@13800000001" in eps["ding"].accepted[0]["markdown"]["text"]
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail["X-Test-Rcpt"] == "wang@unit.example"
    assert sorted(p.get_content_type() for p in mail.walk() if not p.is_multipart()) == [
        "text/html",
        "text/plain",
    ]
    assert [t for t, _ in mqtt_inbox.messages] == [f"{settings.mqtt_notify_prefix}/{orgs.child}"]
    rows = deliveries(settings, alert.alert_id)
    assert len(rows) == 5 and {r[3] for r in rows} == {"sent"} and {r[4] for r in rows} == {1}
    assert {r[2] for r in rows} == {7}


def test_severity_rising_and_retraction_notify_again(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, unique: str
) -> None:
    routing, eps = routing_for(orgs, receivers)
    topic = scratch_topic(settings, f"fw-test-alerts-{unique}")
    alert = make_alert(orgs.child, f"苏B{unique[:5]}", datetime(2026, 11, 27, 13, 10, tzinfo=UTC))
    produce(settings, topic, [(b"k", envelope(alert, 1)), (b"k", envelope(alert, 2, "red"))])
    run_notifier(settings, routing, topic, f"g-{unique}")
    # Later: detection withdraws it; and another alert is raised and withdrawn before anything went out.
    brief = make_alert(orgs.child, f"苏J{unique[:5]}", datetime(2026, 11, 27, 15, 0, tzinfo=UTC))
    produce(
        settings,
        topic,
        [
            (b"k", envelope(alert, 3, "red", retract="approved order o-77 filed late")),
            (b"k", envelope(brief, 1)),
            (b"k", envelope(brief, 2, retract="late data")),
        ],
    )
    run_notifier(settings, routing, topic, f"g-{unique}")
    purposes = [(d["purpose"], d["alert"]["alert_id"], d["alert"]["severity"]) for d in eps["hook"].accepted]
    assert purposes == [
        ("alert", alert.alert_id, "yellow"),
        ("alert", alert.alert_id, "red"),
        ("retraction", alert.alert_id, "red"),
    ]
    assert eps["hook"].accepted[-1]["alert"]["retract_reason"] == "approved order o-77 filed late"
    assert {r[3] for r in deliveries(settings, brief.alert_id)} == {"cancelled"}
    assert len(smtp.messages) == 3


def test_receiver_failing_twice_then_succeeding_gets_exactly_one_delivery(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, unique: str
) -> None:
    routing, eps = routing_for(orgs, receivers)
    eps["hook"].fail_next = 2  # HTTP 500 twice
    eps["ding"].fail_next = 2  # errcode != 0 twice (DingTalk answers HTTP 200 with an error code)
    topic = scratch_topic(settings, f"fw-test-alerts-{unique}")
    alert = make_alert(orgs.child, f"苏C{unique[:5]}", datetime(2026, 11, 27, 13, 10, tzinfo=UTC))
    produce(settings, topic, [(b"k", envelope(alert, 1))])
    run_notifier(settings, routing, topic, f"g-{unique}")
    assert (eps["hook"].requests, len(eps["hook"].accepted)) == (3, 1)
    assert (eps["ding"].requests, len(eps["ding"].accepted)) == (3, 1)
    by_route = {r[0].split("/")[1]: r for r in deliveries(settings, alert.alert_id)}
    assert by_route["hook"][3:5] == ("sent", 3) and "HTTP 500" in by_route["hook"][5]
    assert by_route["ding"][3:5] == ("sent", 3) and "310000" in by_route["ding"][5]
    assert by_route["wecom"][3:5] == ("sent", 1)


def test_webhook_receiver_rejects_tampered_replayed_and_stale_deliveries(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, unique: str
) -> None:
    routing, eps = routing_for(orgs, receivers)
    topic = scratch_topic(settings, f"fw-test-alerts-{unique}")
    alert = make_alert(orgs.child, f"苏D{unique[:5]}", datetime(2026, 11, 27, 13, 10, tzinfo=UTC))
    produce(settings, topic, [(b"k", envelope(alert, 1))])
    run_notifier(settings, routing, topic, f"g-{unique}")
    hook = eps["hook"]
    assert len(hook.accepted) == 1 and hook.rejected == []
    headers, body = hook.raw[0]
    url = f"{receivers.base}/{orgs.child}-hook"

    def post(headers: dict[str, str], body: bytes) -> int:
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    sent = {k: v for k, v in headers.items() if k.startswith("x-fleetwatch")}
    tampered = body.replace(b'"severity": "yellow"', b'"severity": "red"')
    assert tampered != body
    assert post(sent, tampered) == 401
    assert post(sent, body) == 401  # the genuine one again: a replay
    stale = {**sent, "x-fleetwatch-timestamp": str(int(sent["x-fleetwatch-timestamp"]) - 3600)}
    assert post(stale, body) == 401
    assert hook.rejected == ["bad signature", "replayed delivery", "stale timestamp"]
    assert len(hook.accepted) == 1


def test_quiet_hours_hold_then_release(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, unique: str
) -> None:
    routing, eps = routing_for(
        orgs, receivers, quiet_hours={"start": "22:00", "end": "07:00", "except_red": True}
    )
    topic = scratch_topic(settings, f"fw-test-alerts-{unique}")
    yellow = make_alert(orgs.child, f"苏E{unique[:5]}", datetime(2026, 11, 27, 14, 0, tzinfo=UTC))
    red = make_alert(orgs.child, f"苏F{unique[:5]}", datetime(2026, 11, 27, 14, 5, tzinfo=UTC))
    produce(settings, topic, [(b"k", envelope(yellow, 1)), (b"k", envelope(red, 1, "red"))])
    clock = {"now": datetime(2026, 11, 27, 23, 0, tzinfo=SHANGHAI)}
    notifier = Notifier(settings, routing, clock=lambda: clock["now"])
    with connect(settings) as conn:
        notifier.take(conn, read_topic(settings, topic))  # type: ignore[arg-type]
        notifier.tick(conn)  # type: ignore[arg-type]
        assert [d["alert"]["alert_id"] for d in eps["hook"].accepted] == [red.alert_id]  # red is not held
        assert {r[3] for r in deliveries(settings, yellow.alert_id)} == {"held"}
        clock["now"] = datetime(2026, 11, 28, 6, 59, tzinfo=SHANGHAI)
        assert notifier.tick(conn).sent == 0  # type: ignore[arg-type]
        clock["now"] = datetime(2026, 11, 28, 7, 0, 1, tzinfo=SHANGHAI)
        assert notifier.tick(conn).sent == 5  # type: ignore[arg-type]
    notifier.dispatcher.close()
    assert [d["alert"]["alert_id"] for d in eps["hook"].accepted] == [red.alert_id, yellow.alert_id]
    assert {r[3] for r in deliveries(settings, yellow.alert_id)} == {"sent"}


def insert_alert(
    settings: Settings, org: str, alert_id: str, raised_at: datetime, status: str = "open"
) -> None:
    with connect(settings) as conn:
        conn.execute(
            "INSERT INTO alerts (alert_id, type, severity, vehicle_id, org, start_at, lat, lon, raised_at,"
            " due_at,"
            " status, revision) VALUES (%s, 'off_hours', 'yellow', %s, %s, %s, 32.05, 118.78, %s, %s, %s, 4)",
            (
                alert_id,
                f"苏G{alert_id[-5:]}",
                org,
                raised_at - timedelta(minutes=5),
                raised_at,
                raised_at + timedelta(days=3),
                status,
            ),
        )


def test_overdue_alert_escalates_exactly_once(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, unique: str
) -> None:
    routing, eps = routing_for(orgs, receivers)
    now = datetime.now(UTC)
    overdue, fresh, closed = (f"esc-{unique}-{n}" for n in ("overdue", "fresh", "closed"))
    insert_alert(settings, orgs.child, overdue, now - timedelta(days=3, hours=2))
    insert_alert(settings, orgs.child, fresh, now - timedelta(days=2))
    insert_alert(settings, orgs.child, closed, now - timedelta(days=5), status="closed")
    notifier = Notifier(settings, routing)
    with connect(settings) as conn:
        first = notifier.escalate(conn)  # type: ignore[arg-type]
        second = notifier.escalate(conn)  # type: ignore[arg-type]
        notifier.tick(conn)  # type: ignore[arg-type]
    # Another notifier (e.g. after a restart) finds nothing left to escalate either.
    again = Notifier(settings, routing)
    with connect(settings) as conn:
        third = again.escalate(conn)  # type: ignore[arg-type]
        again.tick(conn)  # type: ignore[arg-type]
        events = conn.execute(
            "SELECT alert_id, actor, reason FROM alert_events"
            " WHERE kind = 'escalated' AND alert_id = ANY(%s)",
            ([overdue, fresh, closed],),
        ).fetchall()
    notifier.dispatcher.close()
    again.dispatcher.close()
    mine = [d for d in eps["cityhook"].accepted if d["alert"]["alert_id"] in (overdue, fresh, closed)]
    assert [(d["purpose"], d["alert"]["alert_id"], d["alert"]["escalated_to"]) for d in mine] == [
        ("escalation", overdue, orgs.parent)
    ]
    assert first >= 1 and second == 0 and third == 0  # (first may include other tests' old alerts)
    assert [(e[0], e[1]) for e in events] == [(overdue, "notify")]
    assert orgs.parent in events[0][2]
    city_mail = [m for m in smtp.messages if m["X-Test-Rcpt"] == "li@city.example"]
    assert len(city_mail) == 1 and "OVERDUE" in str(city_mail[0]["Subject"])
    assert eps["hook"].accepted == []  # the unit's own route is not an escalation target


def test_rate_limit_per_channel_holds_the_excess(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, unique: str
) -> None:
    _, eps = routing_for(orgs, receivers)
    limited = parse_routing(
        {
            "channels": {
                "hook": {
                    "type": "webhook",
                    "url": f"{receivers.base}/{orgs.child}-hook",
                    "secret_env": "S",
                    "rate_per_minute": 2,
                }
            },
            "routes": [{"name": f"{orgs.child}-limited", "org": orgs.child, "channels": ["hook"]}],
        },
        env={"S": "unit-hook-secret"},
    )
    topic = scratch_topic(settings, f"fw-test-alerts-{unique}")
    start = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
    alerts = [make_alert(orgs.child, f"苏H{unique[:4]}{i}", start) for i in range(4)]
    produce(settings, topic, [(b"k", envelope(a, 1)) for a in alerts])
    n = Notifier(settings, limited)
    with connect(settings) as conn:
        n.take(conn, read_topic(settings, topic))  # type: ignore[arg-type]
        n.tick(conn)  # type: ignore[arg-type]
        statuses = conn.execute(
            "SELECT status, count(*) FROM notify_deliveries WHERE alert_id = ANY(%s)"
            " GROUP BY status ORDER BY 1",
            ([a.alert_id for a in alerts],),
        ).fetchall()
    n.dispatcher.close()
    assert len(eps["hook"].accepted) == 2
    assert statuses == [("pending", 2), ("sent", 2)]
    assert json.loads(json.dumps(eps["hook"].accepted[0]))["route"] == f"{orgs.child}-limited/hook"


def test_a_record_that_breaks_the_contract_is_refused_and_the_rest_delivered(
    settings: Settings, orgs: Orgs, receivers: Receivers, smtp: SmtpServer, unique: str
) -> None:
    routing, eps = routing_for(orgs, receivers)
    topic = scratch_topic(settings, f"fw-test-alerts-{unique}", partitions=1)
    before = make_alert(orgs.child, f"苏K{unique[:5]}", datetime(2026, 11, 27, 13, 0, tzinfo=UTC))
    after = make_alert(orgs.child, f"苏L{unique[:5]}", datetime(2026, 11, 27, 13, 1, tzinfo=UTC))
    bad = envelope(make_alert(orgs.child, f"苏M{unique[:5]}", before.start), 1, "orange")
    produce(settings, topic, [(b"k", envelope(before, 1)), (b"k", b"{not json"), (b"k", bad),
                              (b"k", envelope(after, 1))])  # fmt: skip
    stats = run_notifier(settings, routing, topic, f"g-{unique}").stats
    assert [d["alert"]["alert_id"] for d in eps["hook"].accepted] == [before.alert_id, after.alert_id]
    assert (stats.records, stats.rejected) == (4, 2)
    assert "not valid JSON" in stats.rejections[0] and "severity" in stats.rejections[1]
