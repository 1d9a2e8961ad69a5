"""Determinism, the CLI surface, and replay readers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import app
from simulator._dataset import build_fleet, build_scenarios, write_dataset
from simulator._replay import Identity, read_track, schedule
from simulator._scenarios import SCENARIOS
from simulator.cli import parse_duration
from tests.simulator.conftest import FAULTS

runner = CliRunner()


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_dataset(build_scenarios(list(SCENARIOS), seed=11, faults=FAULTS), tmp_path / name)
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert a == b and len(a) == 8
    write_dataset(build_scenarios(list(SCENARIOS), seed=12, faults=FAULTS), tmp_path / "c")
    assert digest(tmp_path / "c")["fixes.jsonl"] != a["fixes.jsonl"]


def test_same_seed_same_fleet(tmp_path: Path) -> None:
    write_dataset(build_fleet(30, seed=5, duration=timedelta(days=2)), tmp_path / "a")
    write_dataset(build_fleet(30, seed=5, duration=timedelta(days=2)), tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_same_seed_same_bytes_across_processes(tmp_path: Path) -> None:
    """Nothing may depend on per-process state (hash randomisation, object addresses)."""
    faults = ["--jumps", "0.5", "--drift", "30", "--slow-share", "0.3"]
    args = ["simulate", "scenario", "all", "--seed", "11", *faults]
    exe = Path(sys.executable).parent / "fleetwatch"
    for name in ("a", "b"):
        subprocess.run([str(exe), *args, "--out", str(tmp_path / name)], check=True, capture_output=True)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_help_lists_the_modes() -> None:
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    for mode in ("scenario", "fleet", "replay", "send", "world"):
        assert mode in result.output


def test_scenario_list_and_unknown_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "scenario", "list"])
    assert result.exit_code == 0 and "boundary_jitter" in result.output
    result = runner.invoke(app, ["simulate", "scenario", "nosuch", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "nosuch" in result.output


def test_scenario_cli_writes_a_world(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            "scenario",
            "night,dwell_golf",
            "--out",
            str(tmp_path),
            "--duplicates",
            "0.1",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "truth.jsonl").read_text().count("private_destination") == 1
    assert "duplicates" in result.output


def test_output_choice_is_required(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "scenario", "night"])
    assert result.exit_code != 0 and "--out" in result.output


def test_world_cli(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "world", "--out", str(tmp_path), "--vehicles", "12"])
    assert result.exit_code == 0
    assert (tmp_path / "devices.csv").read_text().count("\n") == 13


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_parse_duration_rejects_garbage() -> None:
    with pytest.raises(Exception, match="use a number"):
        parse_duration("soon")


IDENT = Identity("NJ99999", "苏A99999")


def test_replay_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "ts,lat,lon,speed_kmh\n"
        "2026-11-25T09:00:00+08:00,32.0400,118.7800,0\n"
        "2026-11-25T09:00:10+08:00,32.0410,118.7800,\n"
        "2026-11-25T09:00:20,32.0420,118.7800,\n"  # naive: rejected with its line number
        "2026-11-25T09:00:30+08:00,32.0430,118.7800,40\n"
    )
    track = read_track(path, IDENT)
    assert [f.seq for f in track.fixes] == [1, 2, 3]
    assert 38 < track.fixes[1].speed_kmh < 42  # derived: 111 m in 10 s
    assert track.fixes[1].heading == 0.0
    ((line, err),) = track.rejected
    assert line == 4 and err.code == "naive_timestamp"


def test_replay_gpx(tmp_path: Path) -> None:
    path = tmp_path / "t.gpx"
    path.write_text(
        '<?xml version="1.0"?><gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
        '<trkpt lat="32.04" lon="118.78"><time>2026-11-25T01:00:00Z</time></trkpt>'
        '<trkpt lat="32.04" lon="118.79"><time>2026-11-25T01:01:00Z</time></trkpt>'
        "</trkseg></trk></gpx>"
    )
    track = read_track(path, IDENT)
    assert len(track.fixes) == 2 and 85 < track.fixes[1].heading < 95
    timing = [due for due, _ in schedule(track.fixes, speedup=60)]
    assert timing == [0.0, 1.0]


def test_replay_jsonl_and_shift(tmp_path: Path) -> None:
    ds = build_scenarios(["night"], seed=2)
    write_dataset(ds, tmp_path)
    track = read_track(tmp_path / "fixes.jsonl", None)
    assert len(track.fixes) == ds.count() and not track.rejected
    start = datetime.fromisoformat("2026-11-27T10:00:00+08:00")
    shifted = [f for _, f in schedule(track.fixes[:3], speedup=0, shift_to=start)]
    assert shifted[0].ts == start and shifted[1].ts - shifted[0].ts == track.fixes[1].ts - track.fixes[0].ts


def test_replay_needs_identity_for_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("ts,lat,lon\n")
    with pytest.raises(ValueError, match="--device"):
        read_track(path, None)
