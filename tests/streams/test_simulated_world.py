"""The whole scenario catalogue from the simulator, with transport faults, scored end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetwatch.cli import app
from fleetwatch.records import parse_order
from geofence import load_rules
from streams.core import Context, OrderBook, detect_lines
from streams.core.scoring import parse_alerts, parse_truth, score

FAULTS = ["--duplicates", "0.12", "--reorder", "0.06", "--late-bursts", "2", "--malformed", "0.01"]
#: what real traces showed: position jumps after signal loss, parked drift, 30 s reporters
POSITION_FAULTS = ["--jumps", "0.5", "--drift", "30", "--slow-share", "0.3"]


@pytest.mark.parametrize(
    ("seed", "position_faults"), [(1, []), (2, []), (3, POSITION_FAULTS), (4, POSITION_FAULTS)]
)
def test_full_scenario_set_with_faults_scores_perfectly(
    tmp_path: Path, seed: int, position_faults: list[str]
) -> None:
    res = CliRunner().invoke(
        app,
        [
            "simulate",
            "scenario",
            "all",
            "--out",
            str(tmp_path),
            "--seed",
            str(seed),
            *FAULTS,
            *position_faults,
        ],
    )
    assert res.exit_code == 0, res.output
    rules = load_rules(tmp_path / "rules.yaml")
    orders = [parse_order(x) for x in (tmp_path / "orders.jsonl").read_bytes().splitlines() if x.strip()]
    result = detect_lines(
        (tmp_path / "fixes.jsonl").read_bytes().splitlines(), Context(rules, OrderBook.of(orders))
    )
    assert result.duplicates > 0.1 * (result.fixes - result.duplicates)
    assert result.dead_letters  # malformed lines went to the dead-letter list, processing went on
    truth = parse_truth((tmp_path / "truth.jsonl").read_bytes().splitlines())
    alerts = parse_alerts([a.to_json() for a in result.sorted_alerts()])
    report = score(truth, alerts)
    assert [(m.type, m.scenario, m.note) for m in report.misses] == []
    assert [(f.alert.type.value, f.reason) for f in report.false_alarms] == []
    for kind in ("off_hours", "out_of_area", "private_destination"):
        assert report.by_type[kind].precision == 1.0 and report.by_type[kind].recall == 1.0
    assert report.by_type["off_hours"].must_not > 0 and report.by_type["out_of_area"].must_not > 0
    assert (result.outliers > 0) == bool(position_faults)  # jumps are screened out, counted
