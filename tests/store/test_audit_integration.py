"""The audit log on the real database: workflow actions and evidence reports append a row with who,
what, when and from where; nobody can change or remove one (psql, as the owner and as the writer)."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence.build import build_evidence
from fleetwatch.settings import Settings
from store.db import connect
from tests.store.test_access import psql
from tests.workflow.helpers import seed_alert

pytestmark = pytest.mark.integration
FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))


def _rows(settings: Settings, target: str) -> list[dict[str, Any]]:
    with connect(settings) as conn:
        cur = conn.execute(
            "SELECT audit_id, at, actor, db_user, action, target, detail, host(client_addr), client_host"
            " FROM audit_log WHERE target = %s ORDER BY audit_id", (target,))  # fmt: skip
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@pytest.fixture
def alert_id(database: Settings, unique: str) -> str:
    return seed_alert(database, f"au{unique}", f"苏U{unique[:5]}")


def test_workflow_actions_are_audited_with_who_what_when_where(database: Settings, alert_id: str) -> None:
    before = datetime.now(UTC)
    for args in (("ack", "--by", "wang.manager"), ("close", "--by", "li.chief", "--reason", "order found")):
        done = subprocess.run([FLEETWATCH, "alerts", args[0], alert_id[:16], *args[1:]],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    refused = subprocess.run([FLEETWATCH, "alerts", "ack", alert_id[:16], "--by", "x"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0  # a refused action changes nothing, so it leaves no row
    rows = _rows(database, alert_id)
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("wang.manager", "alert.acknowledged"), ("li.chief", "alert.closed")]
    assert rows[1]["detail"] == {"org": alert_id[:12], "from": "acknowledged", "to": "closed",
                                 "reason": "order found"}
    for row in rows:
        assert before <= row["at"] <= datetime.now(UTC)
        assert row["db_user"] == database.pg_user
        assert row["host"] == "127.0.0.1"  # the connection's address as the server saw it
        assert row["client_host"] == socket.gethostname()


def test_an_evidence_report_is_audited(database: Settings, unique: str, tmp_path: Path) -> None:
    plate = f"苏E{unique[:5]}"
    now = datetime.now(UTC)
    with connect(database) as conn:
        bundle, _ = build_evidence(conn, out_dir=tmp_path / "report", start=now - timedelta(hours=2), end=now,
                                   timezone="Asia/Shanghai", generated_by="inspector.zhao", plate=plate)
    (row,) = _rows(database, plate)
    assert (row["actor"], row["action"]) == ("inspector.zhao", "evidence.report")
    assert row["detail"]["plate"] == plate and row["detail"]["vehicles"] == [plate]
    assert row["detail"]["manifest_sha256"] == bundle.manifest_sha256


def test_nobody_can_change_or_remove_an_audit_row(database: Settings, unique: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from store import audit

    writer = database.pg_sink_user, database.secret("pg_sink_password")
    with connect(database, "sink") as conn:  # the writer role may append
        audit.record(conn, actor="test", action="test.appended", target=f"t{unique}")
    (row,) = _rows(database, f"t{unique}")
    audit_id = row["audit_id"]
    assert row["db_user"] == database.pg_sink_user
    owner = database.pg_user, database.secret("pg_password")
    shown = []
    for who, (user, password) in (("owner", owner), ("writer", writer)):
        for sql in (f"UPDATE audit_log SET actor = 'someone else' WHERE audit_id = {audit_id}",
                    f"DELETE FROM audit_log WHERE audit_id = {audit_id}", "TRUNCATE audit_log"):
            result = psql(database, user, password, sql)
            assert result.returncode != 0, (who, sql)
            # The owner is stopped by the trigger, the writer already by its grants.
            expected = "append-only" if who == "owner" else "permission denied for table audit_log"
            assert expected in result.stderr, result.stderr
            shown.append(f"{who} ({user}): {sql.split()[0]}: {result.stderr.strip().splitlines()[0]}")
    assert [r["actor"] for r in _rows(database, f"t{unique}")] == ["test"]
    with capsys.disabled():
        for line in shown:
            print(f"\n  refused: {line}", end="")
