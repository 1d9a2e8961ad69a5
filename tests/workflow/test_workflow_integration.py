"""`fleetwatch alerts list|show|ack|close|reopen` on the real database: transitions, who and when."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetwatch.settings import Settings
from store.db import connect
from tests.workflow.helpers import seed_alert

pytestmark = pytest.mark.integration
FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLEETWATCH, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def alert_id(database: Settings, unique: str) -> str:
    return seed_alert(database, f"wf{unique}", f"苏W{unique[:5]}")


def test_ack_close_reopen_recorded_with_who_and_when(database: Settings, alert_id: str, unique: str) -> None:
    prefix = alert_id[:14]
    before = datetime.now(UTC)
    assert cli("alerts", "ack", prefix, "--by", "wang.manager").returncode == 0
    refused = cli("alerts", "close", prefix, "--by", "wang.manager", "--reason", " ")
    assert refused.returncode == 1 and "--reason is required" in refused.stdout
    assert (
        cli(
            "alerts", "close", prefix, "--by", "wang.manager", "--reason", "order filed late, verified"
        ).returncode
        == 0
    )
    again = cli("alerts", "ack", prefix, "--by", "li")
    assert again.returncode == 1 and "is closed: acknowledged needs it open" in again.stdout
    assert (
        cli(
            "alerts", "reopen", prefix, "--by", "li.supervisor", "--reason", "order was for another car"
        ).returncode
        == 0
    )
    with connect(database) as conn:
        status = conn.execute("SELECT status FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
        events = conn.execute(
            "SELECT actor, kind, from_status, to_status, reason, at FROM alert_events WHERE alert_id = %s"
            " ORDER BY event_id",
            (alert_id,),
        ).fetchall()
    assert status == ("open",)
    assert [e[:5] for e in events] == [
        ("wang.manager", "acknowledged", "open", "acknowledged", None),
        ("wang.manager", "closed", "acknowledged", "closed", "order filed late, verified"),
        ("li.supervisor", "reopened", "closed", "open", "order was for another car"),
    ]
    assert all(before - timedelta(seconds=5) <= e[5] <= datetime.now(UTC) for e in events)
    listing = cli("alerts", "list", "--org", f"wf{unique}")
    assert listing.returncode == 0 and alert_id[:12] in listing.stdout and "open" in listing.stdout
    shown = cli("alerts", "show", prefix)
    assert shown.returncode == 0 and "li.supervisor" in shown.stdout and "reopened" in shown.stdout


def test_unknown_alert_is_a_clear_error(database: Settings) -> None:
    result = cli("alerts", "ack", "does-not-exist", "--by", "x")
    assert result.returncode == 1 and "no alert with id 'does-not-exist'" in result.stdout
