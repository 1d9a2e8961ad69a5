"""The fault suite on the real stack: every part of the pipeline killed or taken away during one
simulator run, then nothing acknowledged lost (beyond Mosquitto's documented autosave bound) and
nothing doubled: positions, alerts, notifications. PostgreSQL is away for
`FW_FAULTS_PG_OUTAGE_SECONDS` (15 s here; `bench/bench_faults.py` runs the 60 s outage)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from fleetwatch.settings import Settings
from tests.faults.suite import run_suite

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_every_part_killed_nothing_acknowledged_lost_nothing_doubled(
    database: Settings, unique: str, tmp_path: Path
) -> None:
    outage = float(os.environ.get("FW_FAULTS_PG_OUTAGE_SECONDS", "15"))
    counts = run_suite(database, tmp_path, unique, pg_outage_s=outage, publish_seconds=100)
    Console(width=150).print(
        counts.table(f"fault suite (PostgreSQL away {outage:g} s), {counts.seconds:.0f} s")
    )
    print("faults:", "; ".join(f"{name} {took:.1f} s" for name, took in counts.faults))

    print("felt:", counts.felt)
    print("faults at message numbers:", counts.fault_messages, "lost fixes at:", counts.lost_messages)
    assert len(counts.faults) == 4
    # Each outage hit while data was flowing (else it proves nothing).
    assert counts.felt["sink: database outages"] > 0 and counts.felt["bridge: MQTT connection lost"] > 0
    # No service crash-looping: each ran until the end, restarted only by the suite.
    assert all(not exits for exits in counts.unexpected_exits.values()), counts.unexpected_exits
    assert counts.restarts == {"bridge": 1, "worker": 1, "sink": 1, "notifier": 1}
    assert counts.stack_not_running == []
    # Fixes: every acknowledged one stored exactly once, or lost within Mosquitto's bound.
    assert counts.acknowledged == counts.messages_sent
    assert counts.fixes_duplicated == 0
    assert counts.lost_outside_window == 0  # every lost fix was taken by the broker around its crash
    assert counts.lost_before_kill <= counts.loss_bound  # the documented autosave bound
    assert counts.fixes_stored == counts.fixes_on_kafka
    # Alerts: never twice. The alerts table already equals `detect` over the fixes that reached Kafka
    # (run_suite waits for it); against the ground truth over every fix sent it must be exact when
    # nothing was lost. A lost fix at an alert's edge moves its start or end, so with losses an
    # alert may differ from the truth's (counted as lost + unexpected, never hidden).
    assert counts.alerts_duplicated == 0
    if counts.fixes_lost == 0:
        assert counts.alerts_lost == 0 and counts.alerts_unexpected == 0
        assert counts.alerts_stored == counts.alerts_expected
    assert counts.alerts_expected >= 5
    # Notifications: each owed notice sent once, nothing left pending or failed.
    assert counts.notifications_expected > 0
    assert counts.notifications_sent == counts.notifications_expected
    assert counts.notifications_duplicated == 0
    assert counts.notifications_unfinished == 0
    # Mosquitto 2.0.11 routes nothing to the bridge's restored shared subscription until the bridge
    # subscribes again (README "Broker crash bound"): what terminals publish in between is lost,
    # bounded by the bridge's reconnect wait.
    assert counts.lost_after_restart <= counts.restart_bound
