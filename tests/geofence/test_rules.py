"""rules.yaml loading: inheritance, defaults, and errors naming the file and the key path."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from geofence import RulesError, load_rules
from tests.streams.world import RULES, write_world


def load(tmp_path: Path, text: str = RULES):  # type: ignore[no-untyped-def]
    return load_rules(write_world(tmp_path, text))


def test_settings_inherit_province_city_unit_with_defaults(tmp_path: Path) -> None:
    text = RULES.replace(
        "  - id: js\n    name: 江苏省\n",
        "  - id: js\n    name: 江苏省\n    settings:\n"
        '      office_hours: {start: "08:30", end: "17:30"}\n      dwell_min_seconds: 900\n',
    )
    rules = load(tmp_path, text)
    unit = rules.orgs["js.nj.u01"].settings
    assert unit.office_hours.start == time(8, 30) and unit.office_hours.end == time(17, 30)  # from province
    assert unit.dwell_min_seconds == 900  # from province
    assert unit.permitted_region == "region-nj"  # from city
    assert unit.stop_seconds == 300 and unit.region_buffer_m == 200  # defaults
    assert rules.orgs["js"].settings.permitted_region is None
    assert rules.settings_for("苏A10001") is unit
    assert rules.depot_of("苏A10001").id == "depot-u01"  # type: ignore[union-attr]


def test_unquoted_yaml_time_is_read_as_a_time(tmp_path: Path) -> None:
    text = RULES.replace(
        "      permitted_region: region-nj\n",
        "      permitted_region: region-nj\n      office_hours: {start: 08:30, end: 17:00}\n",
    )
    assert load(tmp_path, text).orgs["js.nj"].settings.office_hours.start == time(8, 30)


PR = "      permitted_region: region-nj"
E = "rules.yaml: "


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    parent: js\n    settings:\n",
         '    parent: js\n    settings:\n      office_hours: {start: "25:00"}\n',
         E + "orgs[1].settings.office_hours.start: '25:00' is not a time (HH:MM)"),
        (PR, "      permitted_region: region-sh",
         E + "orgs[1].settings.permitted_region: 'region-sh' is not a zone of kind 'region'"),
        (PR, PR + "\n      dwell_min_secs: 5", E + "orgs[1].settings.dwell_min_secs: unknown setting"),
        (PR, PR + "\n      stop_seconds: -1", E + "orgs[1].settings.stop_seconds: -1 is not a number >= 0"),
        ("    parent: js.nj\n", "    parent: js.xx\n", E + "orgs[2].parent: unknown org 'js.xx'"),
        ("    org: js.nj.u01", "    org: js.nj.u99", E + "vehicles[0].org: unknown org 'js.nj.u99'"),
        ("    depot: depot-u01", "    depot: region-nj",
         E + "vehicles[0].depot: 'region-nj' is not a zone of kind 'depot'"),
        ("zone_files: [zones.geojson]", "zone_files: [nope.geojson]",
         E + "zone_files[0]: 'nope.geojson' not found"),
        ("version: 1", "version: 2", E + "version: must be 1"),
        (PR, PR + "\n      sensitive_categories: [golf, casino]",
         E + "orgs[1].settings.sensitive_categories[1]: 'casino' is not one of"),
    ],
)  # fmt: skip
def test_errors_name_the_file_and_key_path(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in RULES
    with pytest.raises(RulesError) as info:
        load(tmp_path, RULES.replace(old, new))
    assert str(info.value).startswith(message)


def test_calendar_years_from_config(tmp_path: Path) -> None:
    text = (
        RULES + "calendar:\n  years:\n    2027:\n      holidays: [2027-01-01]\n      workdays: [2027-02-07]\n"
    )
    cal = load(tmp_path, text).calendar
    assert not cal.is_workday(date(2027, 1, 1))
    assert cal.is_workday(date(2027, 2, 7))
    bad = RULES + "calendar:\n  years:\n    2027:\n      holidays: [2028-01-01]\n"
    with pytest.raises(RulesError, match=r"calendar\.years\.2027\.holidays\[0\]: 2028-01-01 is not in 2027"):
        load(tmp_path, bad)
