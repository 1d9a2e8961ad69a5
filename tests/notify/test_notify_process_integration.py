"""`fleetwatch notify run` as a process: PostgreSQL stopped under it, then SIGTERM."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from fleetwatch.settings import Settings
from fleetwatch.stack import down
from tests.notify.conftest import Orgs, envelope, make_alert
from tests.notify.receivers import Endpoint, Receivers
from tests.service import ServiceProcess, stack_up_again
from tests.sink.helpers import produce, scratch_topic, wait_for

pytestmark = pytest.mark.integration


def test_notifier_waits_out_a_database_outage_and_stops_cleanly(
    database: Settings, orgs: Orgs, receivers: Receivers, unique: str, tmp_path: Path
) -> None:
    hook = Endpoint("webhook", secret="proc-secret")
    url = receivers.add(f"{orgs.child}-proc", hook)
    routes = tmp_path / "notify.yaml"
    routes.write_text(yaml.safe_dump({
        "channels": {"hook": {"type": "webhook", "url": url, "secret_env": "FW_TEST_HOOK_SECRET"}},
        "routes": [{"name": f"{orgs.child}-proc", "org": orgs.child, "channels": ["hook"]}],
    }))  # fmt: skip
    topic = scratch_topic(database, f"fw-test-alerts-{unique}")
    env = {"FW_TEST_HOOK_SECRET": "proc-secret", "FLEETWATCH_NOTIFY_GROUP": f"g-{unique}",
           "FLEETWATCH_NOTIFY_BACKOFF_SECONDS": "1"}  # fmt: skip
    argv = ["notify", "run", "--routes", str(routes), "--topic", topic]
    notifier = ServiceProcess(tmp_path / "notify.log", argv, ready="notify:", env=env).start()
    first = make_alert(orgs.child, f"苏N{unique[:5]}", datetime(2026, 11, 27, 13, 0, tzinfo=UTC))
    second = make_alert(orgs.child, f"苏P{unique[:5]}", datetime(2026, 11, 27, 14, 0, tzinfo=UTC))
    try:
        produce(database, topic, [(b"k", envelope(first, 1))])
        wait_for(lambda: len(hook.accepted) == 1, 60, "first alert delivered")
        down(database, services=("postgres",))
        try:
            produce(database, topic, [(b"k", envelope(second, 1)), (b"k", envelope(second, 1))])
            time.sleep(12)
            assert notifier.running, "the notifier died while the database was down"
        finally:
            stack_up_again(database)
        wait_for(lambda: len(hook.accepted) == 2, 90, "second alert delivered after the outage")
        time.sleep(3)
        assert notifier.stop(30) == 0
    finally:
        notifier.ensure_stopped()
    output = notifier.log_text()
    assert [d["alert"]["alert_id"] for d in hook.accepted] == [first.alert_id, second.alert_id]
    assert "database unavailable" in output and "records" in output
