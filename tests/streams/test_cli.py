"""`fleetwatch detect` and `fleetwatch score` end to end on the hand-made world."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from typer.testing import CliRunner

from fleetwatch.cli import app
from tests.streams.helpers import drive, park
from tests.streams.world import DEPOT, GOLF, VEHICLE, order, write_world

runner = CliRunner()


def _world(tmp_path: Path) -> tuple[Path, Path, Path]:
    rules = write_world(tmp_path)
    weekend = drive("2026-03-07 10:00:00", *DEPOT, minutes=10)  # off_hours
    weekend += park("2026-03-07 10:11:00", *DEPOT, minutes=6)
    covered = drive("2026-03-07 15:00:00", *DEPOT, minutes=10)  # covered by an order
    covered += park("2026-03-07 15:11:00", *DEPOT, minutes=6)
    golf = park("2026-03-09 10:00:00", *GOLF, minutes=30) + drive("2026-03-09 10:31:00", *GOLF, minutes=2)
    lines = [f.to_json() for f in weekend + covered + golf]
    lines.insert(3, b'{"v": 1, "device_id": "NJ0001"')  # truncated
    lines.insert(5, lines[4])  # duplicate
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_bytes(b"\n".join(lines) + b"\n")
    orders = tmp_path / "orders.jsonl"
    orders.write_bytes(order("o-9", "2026-03-07 14:30:00", "2026-03-07 17:00:00").to_json() + b"\n")
    return rules, fixes, orders


def test_detect_writes_trips_alerts_and_dead_letters(tmp_path: Path) -> None:
    rules, fixes, orders = _world(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["detect", "--config", str(rules), "--orders", str(orders), str(fixes), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert [a["start"] for a in alerts if a["type"] == "off_hours"] == ["2026-03-07T10:00:00+08:00"]
    assert [a["start"] for a in alerts if a["type"] == "private_destination"] == ["2026-03-09T10:00:00+08:00"]
    trips = [orjson.loads(x) for x in (out / "trips.jsonl").read_bytes().splitlines()]
    assert [t.get("order_id") for t in trips].count("o-9") == 1
    [dead] = [orjson.loads(x) for x in (out / "dead_letters.jsonl").read_bytes().splitlines()]
    assert dead["line"] == 4 and dead["code"] == "malformed_json"
    assert "dead letters" in res.output and "duplicates dropped" in res.output


def test_detect_reports_a_bad_rules_file_clearly(tmp_path: Path) -> None:
    rules, fixes, _ = _world(tmp_path)
    rules.write_text(rules.read_text().replace("version: 1", "version: 7"))
    res = runner.invoke(app, ["detect", "--config", str(rules), str(fixes)])
    assert res.exit_code == 2
    assert "rules.yaml: version: must be 1" in res.output


def test_score_lists_misses_and_false_alarms(tmp_path: Path) -> None:
    rules, fixes, orders = _world(tmp_path)
    out = tmp_path / "out"
    runner.invoke(
        app, ["detect", "--config", str(rules), "--orders", str(orders), str(fixes), "--out", str(out)]
    )
    truth = tmp_path / "truth.jsonl"
    lines = [
        {"type": "off_hours", "vehicle_id": VEHICLE, "start": "2026-03-07T10:00:00+08:00",
         "end": "2026-03-07T10:10:00+08:00", "scenario": "weekend"},
        {"type": "off_hours", "vehicle_id": VEHICLE, "start": "2026-03-07T15:00:00+08:00",
         "end": "2026-03-07T15:10:00+08:00", "scenario": "order", "expect": False},
        {"type": "overspeed", "vehicle_id": VEHICLE, "start": "2026-03-08T10:00:00+08:00",
         "end": "2026-03-08T10:01:00+08:00", "scenario": "speeding"},
    ]  # fmt: skip
    truth.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = runner.invoke(
        app, ["score", str(truth), str(out / "alerts.jsonl"), "--min-score", "1.0"], terminal_width=200
    )
    assert res.exit_code == 1  # overspeed missed, private_destination unexpected
    assert "misses (1)" in res.output and "speeding" in res.output
    assert "false alarms (" in res.output and "matches no" in res.output


def _mixed_calendar_world(tmp_path: Path) -> tuple[Path, Path]:
    """苏A10001 on a covered Saturday; an unregistered vehicle on 2027-01-04 (not covered)."""
    rules = write_world(tmp_path)
    weekend = drive("2026-03-07 10:00:00", *DEPOT, minutes=10) + park(
        "2026-03-07 10:11:00", *DEPOT, minutes=6
    )
    uncovered = drive("2027-01-04 10:00:00", *DEPOT, minutes=10) + park(
        "2027-01-04 10:11:00", *DEPOT, minutes=6
    )
    lines = [f.to_json() for f in weekend]
    for f in uncovered:
        raw = f.to_dict() | {"vehicle_id": "苏A20002", "device_id": "NJ0002"}
        lines.append(orjson.dumps(raw))
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_bytes(b"\n".join(lines) + b"\n")
    return rules, fixes


def test_an_uncovered_date_isolates_to_its_vehicle_day_and_is_reported(tmp_path: Path) -> None:
    rules, fixes = _mixed_calendar_world(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["detect", "--no-future-check", "--config", str(rules), str(fixes), "--out", str(out)],
        terminal_width=200,
    )
    assert res.exit_code == 0, res.output
    alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert [(a["vehicle_id"], a["type"]) for a in alerts] == [(VEHICLE, "off_hours")]
    trips = [orjson.loads(x) for x in (out / "trips.jsonl").read_bytes().splitlines()]
    assert sorted(t["vehicle_id"] for t in trips) == sorted([VEHICLE, "苏A20002"])
    assert "calendar missing 2027" in res.output and "1 vehicle-day" in res.output


def test_strict_keeps_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    rules, fixes = _mixed_calendar_world(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["detect", "--strict", "--no-future-check", "--config", str(rules), str(fixes), "--out", str(out)],
        terminal_width=200,
    )
    assert res.exit_code == 2
    assert "2027" in res.output and "nothing written" in res.output
    assert not (out / "alerts.jsonl").exists()
