"""Grafana's query interpolation for the PostgreSQL datasource, for the macros our dashboards use.

Grafana turns a panel's ``rawSql`` into SQL in two steps, reproduced here so the checks run the
same text Grafana would send:

1. the frontend's template service replaces dashboard variables (``$name``, ``${name}``) and the
   global ``$__interval`` / ``$__interval_ms``. SQL datasources format values themselves: a
   multi-value or include-All variable becomes a comma-separated list of single-quoted literals
   (``'a','b'``, quotes doubled); a single-value one is inserted raw with quotes doubled, so the
   query writes ``'$vehicle'``. "All" without a custom all-value means every option's value.
2. the backend's macro engine (Go regexp ``\\$(\\w+)\\(([^)]*)\\)``) expands:
   ``$__timeFilter(c)`` -> ``c BETWEEN '<from>' AND '<to>'`` (RFC 3339, UTC);
   ``$__timeFrom()`` / ``$__timeTo()`` -> ``'<from>'`` / ``'<to>'``;
   ``$__timeGroup(c, '5m')`` -> ``time_bucket('300.000s',c)`` with the datasource's TimescaleDB
   option on (``floor(extract(epoch from c)/300)*300`` without); ``$__timeGroupAlias(...)`` adds
   ``AS "time"``; ``$__time(c)`` -> ``c AS "time"``. An unknown macro is an error, as in Grafana.

``$__interval`` is the time range divided by the panel's max data points, rounded to Grafana's
"nice" steps, never below the panel's min interval.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

_VARIABLE_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO_RE = re.compile(r"\$(\w+)\(([^)]*)\)")
_DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

#: Grafana's interval rounding: (upper bound of the raw interval, rounded interval), in ms.
_ROUNDING_MS = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (24_300_000, 21_600_000),
    (64_800_000, 43_200_000),
    (129_600_000, 86_400_000),
    (907_200_000, 604_800_000),
)


class MacroError(ValueError):
    """A query uses a variable nobody defined, an unknown macro, or a macro with bad arguments."""


@dataclass(frozen=True, slots=True)
class VariableValue:
    """A variable's current value(s) and how Grafana formats it (multi / include-All -> quoted list)."""

    values: tuple[str, ...]
    quoted_list: bool


@dataclass
class QueryContext:
    """Everything interpolation needs: time range, variables, panel interval settings."""

    time_from: datetime
    time_to: datetime
    variables: Mapping[str, VariableValue] = field(default_factory=dict)
    max_data_points: int = 1000
    min_interval: str | None = None
    timescaledb: bool = True

    @property
    def interval(self) -> timedelta:
        span_ms = (self.time_to - self.time_from).total_seconds() * 1000
        raw_ms = span_ms / max(self.max_data_points, 1)
        rounded = round_interval_ms(raw_ms)
        if self.min_interval:
            rounded = max(rounded, parse_duration(self.min_interval).total_seconds() * 1000)
        return timedelta(milliseconds=rounded)


def round_interval_ms(raw_ms: float) -> float:
    for bound, rounded in _ROUNDING_MS:
        if raw_ms <= bound:
            return float(rounded)
    return 30 * 86_400_000.0 if raw_ms <= 3 * 604_800_000 * 3 else 365 * 86_400_000.0


def parse_duration(text: str) -> timedelta:
    """Grafana's interval strings: ``10s``, ``5m``, ``1h``, ``1d`` (optionally quoted)."""
    match = _DURATION_RE.match(text.strip().strip("'"))
    if not match:
        raise MacroError(f"interval {text!r} is not a duration like 30s, 5m, 1h")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def format_interval(value: timedelta) -> str:
    """Grafana's gtime.FormatInterval: the largest whole unit (``1d``, ``2h``, ``5m``, ``30s``)."""
    ms = round(value.total_seconds() * 1000)
    for unit, seconds in (("y", 31536000), ("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        unit_ms = seconds * 1000
        if ms >= unit_ms and ms % unit_ms == 0:
            return f"{ms // unit_ms}{unit}"
    return f"{ms}ms"


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_variable(value: VariableValue) -> str:
    if value.quoted_list:
        return ",".join(quote_literal(v) for v in value.values)
    return ",".join(v.replace("'", "''") for v in value.values)


def _rfc3339(moment: datetime) -> str:
    text = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


def variables_used(sql: str) -> set[str]:
    """Names of the dashboard variables a query refers to (not Grafana's ``$__`` globals/macros)."""
    names = {m.group(1) or m.group(3) for m in _VARIABLE_RE.finditer(_MACRO_RE.sub("", sql))}
    return {n for n in names if not n.startswith("__")}


def interpolate(sql: str, ctx: QueryContext) -> str:
    """The SQL Grafana's PostgreSQL datasource would run for this query and context."""
    interval = ctx.interval

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name == "__interval_ms":
            return str(round(interval.total_seconds() * 1000))
        if name == "__interval":
            return format_interval(interval)
        if name in ("__from", "__to"):
            moment = ctx.time_from if name == "__from" else ctx.time_to
            return str(round(moment.timestamp() * 1000))
        if name.startswith("__"):
            return match.group(0)  # a macro: the backend's step
        if name not in ctx.variables:
            raise MacroError(f"query uses ${name}, which no dashboard variable defines")
        return format_variable(ctx.variables[name])

    return expand_macros(_VARIABLE_RE.sub(variable, sql), ctx)


def expand_macros(sql: str, ctx: QueryContext) -> str:
    def macro(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        return _macro(name, args, ctx)

    return _MACRO_RE.sub(macro, sql)


def _macro(name: str, args: Sequence[str], ctx: QueryContext) -> str:
    column = args[0] if args and args[0] else None
    if name in ("__time", "__timeFilter", "__timeGroup", "__timeGroupAlias") and column is None:
        raise MacroError(f"${name}() needs a time column argument")
    if name == "__time":
        return f'{column} AS "time"'
    if name == "__timeFilter":
        return f"{column} BETWEEN '{_rfc3339(ctx.time_from)}' AND '{_rfc3339(ctx.time_to)}'"
    if name == "__timeFrom":
        return f"'{_rfc3339(ctx.time_from)}'"
    if name == "__timeTo":
        return f"'{_rfc3339(ctx.time_to)}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        if len(args) < 2:
            raise MacroError(f"${name}() needs a time column and an interval")
        seconds = parse_duration(args[1]).total_seconds()
        if ctx.timescaledb:
            group = f"time_bucket('{seconds:.3f}s',{column})"
        else:
            group = f"floor(extract(epoch from {column})/{seconds:g})*{seconds:g}"
        return group + (' AS "time"' if name == "__timeGroupAlias" else "")
    raise MacroError(f"unknown macro ${name}()")
