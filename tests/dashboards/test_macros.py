"""Grafana's PostgreSQL interpolation: variables (multi-value quoting), $__interval, macros."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.macros import (
    MacroError,
    QueryContext,
    VariableValue,
    format_interval,
    interpolate,
    round_interval_ms,
    variables_used,
)

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)


def ctx(span: timedelta = timedelta(hours=6), **variables: VariableValue) -> QueryContext:
    return QueryContext(T0, T0 + span, variables)


def test_time_filter_and_bounds_are_rfc3339_utc() -> None:
    sql = interpolate("WHERE $__timeFilter(ts) AND x < $__timeTo() AND y > $__timeFrom()", ctx())
    assert sql == (
        "WHERE ts BETWEEN '2026-11-25T00:00:00Z' AND '2026-11-25T06:00:00Z' "
        "AND x < '2026-11-25T06:00:00Z' AND y > '2026-11-25T00:00:00Z'"
    )


def test_time_filter_converts_other_offsets_to_utc() -> None:
    shanghai = datetime(2026, 11, 25, 8, 0, tzinfo=UTC).astimezone()
    sql = interpolate("$__timeFrom()", QueryContext(shanghai, shanghai + timedelta(hours=1)))
    assert sql == "'2026-11-25T08:00:00Z'"


def test_time_group_alias_uses_time_bucket_with_timescaledb_and_floor_without() -> None:
    assert interpolate("$__timeGroupAlias(at, '5m')", ctx()) == "time_bucket('300.000s',at) AS \"time\""
    plain = QueryContext(T0, T0 + timedelta(hours=1), timescaledb=False)
    assert interpolate("$__timeGroup(at, 1h)", plain) == "floor(extract(epoch from at)/3600)*3600"


def test_interval_is_range_over_max_data_points_rounded_like_grafana() -> None:
    # 6 h / 1000 points = 21.6 s -> Grafana rounds to 20 s.
    assert interpolate("$__interval $__interval_ms", ctx()) == "20s 20000"
    assert interpolate("$__timeGroupAlias(t, $__interval)", ctx()) == "time_bucket('20.000s',t) AS \"time\""
    # 7 days / 1000 = 604.8 s -> 10m; a panel's min interval wins when larger.
    assert format_interval(ctx(timedelta(days=7)).interval) == "10m"
    floor = QueryContext(T0, T0 + timedelta(hours=1), min_interval="1m")
    assert format_interval(floor.interval) == "1m"
    assert round_interval_ms(21_600) == 20_000 and round_interval_ms(40) == 50


def test_multi_value_variables_become_quoted_lists_with_quotes_doubled() -> None:
    unit = VariableValue(("js.nj.u01", "o'brien"), quoted_list=True)
    assert interpolate("org IN ($unit)", ctx(unit=unit)) == "org IN ('js.nj.u01','o''brien')"
    assert interpolate("org IN (${unit})", ctx(unit=unit)) == "org IN ('js.nj.u01','o''brien')"


def test_single_value_variables_are_raw_with_quotes_doubled() -> None:
    vehicle = VariableValue(("苏A1'0",), quoted_list=False)
    assert interpolate("vehicle_id = '$vehicle'", ctx(vehicle=vehicle)) == "vehicle_id = '苏A1''0'"


def test_undefined_variable_and_unknown_macro_are_errors() -> None:
    with pytest.raises(MacroError, match=r"\$nope"):
        interpolate("x = $nope", ctx())
    with pytest.raises(MacroError, match="unknown macro"):
        interpolate("$__timeFilterr(ts)", ctx())
    with pytest.raises(MacroError, match="needs a time column"):
        interpolate("$__timeFilter()", ctx())


def test_variables_used_ignores_macros_and_globals() -> None:
    sql = (
        "SELECT $__timeGroupAlias(ts, $__interval) WHERE org IN ($unit) AND v = '${vehicle}' AND $__time(ts)"
    )
    assert variables_used(sql) == {"unit", "vehicle"}
