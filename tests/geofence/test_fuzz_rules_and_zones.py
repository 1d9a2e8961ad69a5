"""Fuzzing rules.yaml and GeoJSON zone files: every file loads or raises RulesError / ZoneError."""

from __future__ import annotations

from pathlib import Path

import pytest

from geofence import RulesError, ZoneError, load_rules, load_zone_file
from tests.fuzzing import assert_no_crash


def test_rules_files_never_crash() -> None:
    assert_no_crash("rules", cases=300, seed_value=15)


def test_zone_files_never_crash() -> None:
    assert_no_crash("zones", cases=300, seed_value=15)


BASE = "version: 1\norgs:\n- id: js\n  settings:\n    {setting}\n"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\ntimezone: Asia\norgs: []\n", "timezone"),  # a tz directory: IsADirectoryError
        ("version: 1\ntimezone: " + "x" * 300 + "\norgs: []\n", "timezone"),  # name too long: OSError
        ("version: 1\norgs: []\ncalendar: {years: {.inf: {}}}\n", "calendar.years.inf"),  # int(inf)
        (BASE.format(setting="out_of_area_min_fixes: .inf"), "out_of_area_min_fixes"),  # int(inf)
        (BASE.format(setting="stop_seconds: .nan"), "stop_seconds"),  # NaN was accepted
        (BASE.format(setting="overspeed_kmh: .inf"), "overspeed_kmh"),  # so was infinity
        ("version: 1\norgs: []\nx: " + "9" * 5000 + "\n", "not a usable value"),  # int digit limit
        ("version: 1\norgs: []\nzone_files: [" + "z" * 300 + "]\n", "zone_files[0]"),  # ENAMETOOLONG: OSError
        ('version: 1\norgs: []\nzone_files: ["a\\0b"]\n', "zone_files[0]"),  # NUL byte: ValueError
    ],
)
def test_rules_regressions_are_clear_errors(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError, match=r"rules\.yaml") as caught:
        load_rules(path)
    assert where in str(caught.value)


def test_a_zone_file_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nzone_files: [zones]\norgs: []\n")  # IsADirectoryError before
    with pytest.raises(ZoneError, match="zones: cannot be read"):
        load_rules(path)


def test_rules_that_are_not_utf8_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes("version: 1\norgs: []\n# 江苏\n".encode("gbk"))
    with pytest.raises(RulesError, match="not UTF-8 text"):
        load_rules(path)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ('{"type": "FeatureCollection"}'.encode("utf-16"), "not UTF-8 text"),
        (b'{"type": "FeatureCollection", "n": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b"[" * 100_000, "nested too deeply|not valid JSON"),
        (
            b'{"type": "FeatureCollection", "datum": "WGS-84", "features": [{"type": "Feature", "properties":'
            b' {"id": "a", "kind": "region"}, "geometry": {"type": "Polygon",'
            b' "coordinates": [[null, [118.8, 32.0], [118.8, 32.1], null]]}}]}',
            "every position must be a",
        ),
    ],
)
def test_zone_file_regressions_are_clear_errors(tmp_path: Path, raw: bytes, match: str) -> None:
    path = tmp_path / "zones.geojson"
    path.write_bytes(raw)
    with pytest.raises(ZoneError, match=match):
        load_zone_file(path)
