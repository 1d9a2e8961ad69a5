"""`fleetwatch demo` (shortened) on the real stack: the whole pipeline under the supervisor, the
summary's figures checked, the HTML snapshot rendered in headless Chromium, Ctrl-C stops everything."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fleetwatch.settings import Settings
from store.db import connect
from tests.evidence.chromium import render

pytestmark = pytest.mark.integration
SCREENSHOT = Path(__file__).parents[2] / "docs" / "screenshots" / "demo-snapshot.png"
SCENARIOS = "workday,night,dwell_ktv,order_off_hours,out_of_area,driveby_ktv"


def plate_shift(namespace: str) -> int:
    """How the simulator shifts plates for a namespace (simulator._world.build_world)."""
    return int(hashlib.sha256(namespace.encode()).hexdigest(), 16) % 8 if namespace else 0


def used_shifts(settings: Settings) -> set[int]:
    """Plate ranges (10000 + shift * 10000) the shared database already knows (from other tests
    or benchmarks): the worker holds state per plate, so a demo vehicle must not reuse one."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT DISTINCT substr(vehicle_id, 3, 1) FROM (SELECT vehicle_id FROM vehicle_state "
            "UNION SELECT vehicle_id FROM vehicles) v WHERE vehicle_id ~ '^苏[AL][1-8][0-9]{4}$'"
        ).fetchall()
    return {int(r[0]) - 1 for r in rows}


def namespace_for(settings: Settings, unique: str) -> str:
    """A fresh device namespace whose fleet and scenario plates differ from each other and from every
    plate range already in the database."""
    used = used_shifts(settings)
    for i in range(200):
        ns = f"t{unique[:6]}{i}-"
        fleet, scenarios = plate_shift(ns), plate_shift(ns + "demo-")
        if fleet != scenarios and not {fleet, scenarios} & used:
            return ns
    raise AssertionError(
        f"every plate range is in use in this database (shifts {sorted(used)}): reset the stack"
    )


def our_processes(marker: str) -> list[str]:
    """Command lines of running processes that mention ``marker`` (the demo's output directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_runs_scores_renders_and_stops_cleanly(database: Settings, unique: str, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "fleetwatch", "demo", "--vehicles", "12", "--duration", "8h",
               "--scenarios", SCENARIOS, "--namespace", namespace_for(database, unique), "--settle", "20",
               "--out", str(out), "--keep-running"]  # fmt: skip
    log = (tmp_path / "demo.out").open("wb")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "150"}
    )
    summary_path = out / "summary.json"
    try:
        deadline = time.monotonic() + 600
        while not summary_path.exists():
            assert proc.poll() is None, (tmp_path / "demo.out").read_text()[-4000:]
            assert time.monotonic() < deadline, "no summary within 600 s"
            time.sleep(1)
        time.sleep(3)  # --keep-running: live after the summary
        assert proc.poll() is None
        assert our_processes(str(out))  # the services run (their command lines name the demo's files)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    printed = (tmp_path / "demo.out").read_text()
    assert our_processes(str(out)) == [], printed[-3000:]  # nothing left running
    stopped = r"stopped: bridge-1 \(exit 0\), worker-1 \(exit 0\), sink-1 \(exit 0\), notify \(exit 0\)"
    assert re.search(stopped, printed), printed[-3000:]

    summary = json.loads(summary_path.read_text())
    rules = yaml.safe_load((out / "world" / "rules.yaml").read_text())
    assert len(rules["vehicles"]) == 12 + len(SCENARIOS.split(","))
    # Nothing lost: every valid fix sent is a positions row; duplicates and malformed were sent too.
    assert summary["messages_sent"] > summary["valid_fixes"] > 3000
    assert summary["positions_stored"] == summary["valid_fixes"]
    # Scored against the simulator's truth: every expected alert found, no false alarm.
    assert summary["misses"] == 0 and summary["false_alarms"] == 0, summary["score"]
    expected = {k for k, r in summary["score"].items() if r["expected"]}
    assert {"off_hours", "private_destination", "out_of_area"} <= expected
    assert all(
        summary["score"][k]["recall"] == 1.0 and summary["score"][k]["precision"] == 1.0 for k in expected
    )
    assert summary["alerts"] >= len(expected)
    assert summary["rows"]["positions"] >= summary["positions_stored"]
    assert summary["notifications"].get("sent", 0) >= 1
    assert all(n == 0 for n in summary["restarts"].values())
    assert (Path(summary["grafana_provisioning"]) / "datasources" / "fleetwatch.yaml").exists()
    evidence = Path(summary["evidence_report"])
    assert evidence.exists() and 'class="track"' in evidence.read_text()

    # The snapshot: every vehicle on the map, the open alerts, rendered offline in Chromium.
    assert summary["snapshot_vehicles"] == len(rules["vehicles"])
    shot = render(Path(summary["snapshot"]), SCREENSHOT, 1000, 1150)
    assert shot.console == []
    dots = re.findall(r'<circle class="vehicle status-(\w+)"', shot.dom)
    assert len(dots) == summary["snapshot_vehicles"]
    rings = re.findall(r'<circle class="alert severity-(\w+)"', shot.dom)
    assert len(rings) == summary["snapshot_open_alerts"] >= 1
    assert "red" in rings  # the 40-minute KTV stop is red
    assert 'class="zone zone-region"' in shot.dom and "WGS-84" in shot.dom
    assert shot.png.stat().st_size > 20_000
