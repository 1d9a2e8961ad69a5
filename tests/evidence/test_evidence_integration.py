"""Evidence bundles from the real database, opened in real headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from evidence.build import build_evidence
from fleetwatch.settings import Settings
from geofence import load_rules, wgs84_to_gcj02
from store.db import connect
from tests.evidence.chromium import render
from tests.evidence.scene import ARRIVE, KTV, LEAVE, SHANGHAI, insert_scene, write_rules

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).with_name("artifacts")
FLEETWATCH = str(Path(sys.executable).with_name("fleetwatch"))


def _path_points(dom: str, css_class: str) -> list[list[tuple[float, float]]]:
    paths = re.findall(rf'<path class="{css_class}" d="([^"]+)"', dom)
    return [[(float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", d)] for d in paths]


def test_night_ktv_visit_report_renders_in_chromium(database: Settings, unique: str, tmp_path: Path) -> None:
    scene = insert_scene(database, unique)
    rules = load_rules(write_rules(tmp_path, scene))
    out = ARTIFACTS / "night-ktv"
    start, end = ARRIVE - timedelta(minutes=45), LEAVE + timedelta(minutes=40)
    with connect(database) as conn:
        bundle, vehicles = build_evidence(
            conn,
            out_dir=out,
            start=start,
            end=end,
            timezone="Asia/Shanghai",
            generated_by="pytest",
            plate=scene.vehicle,
            rules=rules,
        )  # type: ignore[arg-type]
    [v] = vehicles
    assert len(v.track) == scene.fixes
    assert [a["alert_id"] for a in v.alerts] == [scene.night_alert, scene.ktv_alert]
    assert len(v.trips) == 2 and len(v.orders) == 1
    [stop] = v.stops
    assert abs(stop.seconds - (LEAVE - ARRIVE).total_seconds()) <= 120

    shot = render(bundle.html, ARTIFACTS / "night-ktv.png")
    assert shot.console == []  # no errors, no warnings, no blocked network fetch
    [track] = _path_points(shot.dom, "track")
    assert len(track) == scene.fixes  # every fix is a vertex of the drawn path
    assert all(0 <= x <= 860 and 0 <= y <= 560 for x, y in track)
    assert len(set(track)) > 50  # a line, not a point
    assert f'data-points="{scene.fixes}"' in shot.dom
    assert "#d93025" in shot.dom and 'class="alert-span"' in shot.dom  # the red KTV span
    assert 'class="zone zone-region"' in shot.dom and 'class="zone zone-sensitive"' in shot.dom
    assert "WGS-84" in shot.dom and "GCJ-02" in shot.dom  # the datum is stated
    assert shot.png.stat().st_size > 20_000

    manifest = json.loads(bundle.manifest.read_text())
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    assert hashlib.sha256(bundle.manifest.read_bytes()).hexdigest() == bundle.manifest_sha256
    geo = json.loads((out / "track.geojson").read_text())
    [line] = [f for f in geo["features"] if f["properties"]["kind"] == "track"]
    assert len(line["geometry"]["coordinates"]) == scene.fixes
    assert (out / "track.gpx").read_text().count("<trkpt ") == scene.fixes


def test_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The negative control: the same rendering reports a script error and a network fetch."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img src="https://tile.example.com/1.png">'
                    '<script>throw new Error("boom")</script></body></html>')  # fmt: skip
    shot = render(page, tmp_path / "broken.png", 400, 300)
    assert any("boom" in line for line in shot.console)


def test_near_query_finds_who_was_within_200_m(database: Settings, unique: str, tmp_path: Path) -> None:
    scene = insert_scene(database, unique)
    out = tmp_path / "near"
    result = subprocess.run(
        [FLEETWATCH, "evidence", "--near", f"{KTV[0]},{KTV[1]}", "--radius", "200",
         "--from", ARRIVE.astimezone(SHANGHAI).strftime("%Y-%m-%dT21:00"), "--to", "2026-11-27T23:00",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert scene.vehicle in manifest["vehicles"] and scene.bystander in manifest["vehicles"]
    # 100 m narrows it to the car that parked there (the other passed ~120 m away).
    narrow = subprocess.run(
        [FLEETWATCH, "evidence", "--near", f"{KTV[0]},{KTV[1]}", "--radius", "100",
         "--from", "2026-11-27T21:00", "--to", "2026-11-27T23:00", "--out", str(tmp_path / "narrow")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert narrow.returncode == 0, narrow.stdout + narrow.stderr
    narrow_manifest = json.loads((tmp_path / "narrow" / "manifest.json").read_text())
    assert [v for v in narrow_manifest["vehicles"] if v.endswith(unique[:5]) or v.endswith(unique[5:10])] == [
        scene.vehicle
    ]


def test_complaint_in_gcj02_opens_a_case_due_in_3_days_with_evidence(
    database: Settings, unique: str, tmp_path: Path
) -> None:
    scene = insert_scene(database, unique)
    glat, glon = wgs84_to_gcj02(*KTV)  # what a caller reads off AMap
    env_out = {"FLEETWATCH_EVIDENCE_DIR": str(tmp_path)}
    result = subprocess.run(
        [FLEETWATCH, "complaint", "add", "--plate", scene.vehicle, "--time", "2026-11-27T21:40",
         "--place", f"{glat:.6f},{glon:.6f}", "--datum", "GCJ-02", "--by", "hotline-12345",
         "--text", "公务车周五晚在KTV门口停了两个小时"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env_out},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    with connect(database) as conn:
        row = conn.execute(
            "SELECT complaint_id, lat, lon, given_datum, given_lat, created_by, due_at - created_at,"
            " evidence_path,"
            " evidence_sha256 FROM complaints WHERE vehicle_id = %s",
            (scene.vehicle,),
        ).fetchone()
    assert row is not None
    _, lat, lon, datum, given_lat, by, due_in, path, digest = row
    assert (datum, by, due_in) == ("GCJ-02", "hotline-12345", timedelta(days=3))
    assert abs(given_lat - glat) < 1e-6
    # Converted back to WGS-84 within a metre (GCJ-02 is ~500 m off here).
    assert abs(lat - KTV[0]) * 111_000 < 1 and abs(lon - KTV[1]) * 94_000 < 1
    manifest = Path(path) / "manifest.json"
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() == digest
    geo = json.loads((Path(path) / "track.geojson").read_text())
    alert_ids = {f["properties"].get("alert_id") for f in geo["features"]}
    assert {scene.ktv_alert, scene.night_alert} <= alert_ids
    assert "Complaint #" in (Path(path) / "report.html").read_text()
