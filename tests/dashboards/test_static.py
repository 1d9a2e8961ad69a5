"""The committed dashboards: current, unique, datasources resolve, variables defined, SDK decodes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dashboards.build import JSON_DIR, load_committed, provision, render, stale_files
from dashboards.check import sql_texts, static_problems
from dashboards.spec import Json
from fleetwatch.settings import Settings


@pytest.fixture(scope="module")
def boards() -> dict[str, Json]:
    return load_committed()


def test_committed_json_is_what_the_python_definitions_render() -> None:
    assert stale_files() == [], "run `fleetwatch dashboards build` and commit dashboards/json/"
    assert sorted(render()) == sorted(p.name for p in JSON_DIR.glob("*.json"))


def test_all_five_dashboards_pass_the_static_checks(boards: dict[str, Json]) -> None:
    assert {b["uid"] for b in boards.values()} == {
        "fw-live-map",
        "fw-alerts-sla",
        "fw-track-replay",
        "fw-fleet-kpis",
        "fw-pipeline",
    }
    assert static_problems(boards) == []


def _mutated(boards: dict[str, Json], name: str) -> tuple[dict[str, Json], Json]:
    copied = copy.deepcopy(boards)
    return copied, copied[name]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda b: b["alerts-sla.json"].__setitem__("uid", "fw-live-map"), "uid 'fw-live-map'"),
        (
            lambda b: b["live-map.json"]["panels"][0]["targets"][0]["datasource"].__setitem__("uid", "other"),
            "not a provisioned datasource",
        ),
        (
            lambda b: b["fleet-kpis.json"]["panels"][1]["targets"][0].__setitem__(
                "rawSql", "SELECT 1 WHERE org IN ($units)"
            ),
            "undefined variable(s) ['units']",
        ),
        (lambda b: b["live-map.json"]["templating"]["list"].reverse(), "before they are defined"),
        (
            lambda b: b["alerts-sla.json"]["panels"][-1]["fieldConfig"]["defaults"]["links"][0].__setitem__(
                "url", "/d/fw-track-replay/x?var-vehicel=${__data.fields.vehicle_id}"
            ),
            "var-vehicel",
        ),
        (
            lambda b: b["alerts-sla.json"]["panels"][-1]["fieldConfig"]["defaults"]["links"][0].__setitem__(
                "url", "/d/fw-nope/x?var-vehicle=1"
            ),
            "unknown dashboard uid 'fw-nope'",
        ),
        (
            lambda b: b["pipeline-health.json"]["panels"][1].__setitem__("type", "graph-ng"),
            "not a core panel",
        ),
        (
            lambda b: b["pipeline-health.json"]["panels"][1]["fleetwatch"]["shape"]["A"]["needs"].pop("time"),
            "needs a time column",
        ),
        (lambda b: b["live-map.json"]["panels"][0]["options"]["layers"][1].pop("type"), "geomap layers"),
    ],
)
def test_the_static_checks_catch_each_kind_of_mistake(
    boards: dict[str, Json], breakage: object, expected: str
) -> None:
    broken = copy.deepcopy(boards)
    breakage(broken)  # type: ignore[operator]
    problems = static_problems(broken)
    assert any(expected in p for p in problems), problems


def test_live_map_reads_vehicle_state_never_positions_and_kpis_read_the_rollup(
    boards: dict[str, Json],
) -> None:
    live = " ".join(sql for _, sql in sql_texts(boards["live-map.json"]))
    assert "vehicle_state" in live and "positions" not in live
    kpi_panels = [sql for where, sql in sql_texts(boards["fleet-kpis.json"]) if where.startswith("panel")]
    assert all("kpi_daily" in sql for sql in kpi_panels)
    assert not any(t in sql for sql in kpi_panels for t in ("positions", "FROM trips", "FROM alerts"))
    assert boards["live-map.json"]["refresh"] == "10s"


def test_every_panel_and_annotation_filters_by_org_or_one_vehicle(boards: dict[str, Json]) -> None:
    for name, board in boards.items():
        for where, sql in sql_texts(board):
            if where.startswith("variable 'city'") or where.startswith("variable 'vehicle'"):
                continue
            assert "$unit" in sql or "'$vehicle'" in sql or "'$alert'" in sql or "$city" in sql, (name, where)


def test_offline_basemap_by_default_and_a_tile_url_setting_swaps_in_xyz(tmp_path: Path) -> None:
    offline = json.loads(render()["live-map.json"])["panels"][0]["options"]["basemap"]
    assert offline["type"] == "geojson" and offline["config"]["src"].endswith("fleetwatch-regions.geojson")
    url = "https://t0.tianditu.gov.cn/vec_w/wmts?tk=KEY&x={x}&y={y}&l={z}"
    settings = Settings(dashboards_tile_url=url, pg_host="db.internal", pg_port=5433)
    tree = provision(tmp_path, settings)
    board = json.loads((tmp_path / "dashboards" / "live-map.json").read_text(encoding="utf-8"))
    assert board["panels"][0]["options"]["basemap"] == {
        "type": "xyz",
        "name": "Basemap",
        "config": {"url": url, "attribution": ""},
    }
    datasource = tree.datasource.read_text(encoding="utf-8")
    assert "url: db.internal:5433" in datasource and "user: fleetwatch_dashboards" in datasource
    assert "password: ${FLEETWATCH_PG_DASHBOARDS_PASSWORD}" in datasource  # the secret stays out of files
    assert f"path: {tmp_path / 'dashboards'}" in tree.provider.read_text(encoding="utf-8")
    assert json.loads(tree.regions.read_text(encoding="utf-8"))["datum"] == "WGS-84"
