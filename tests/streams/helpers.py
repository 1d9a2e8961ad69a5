"""Builders for timestamped fix sequences and a runner over the core (process + flush)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from fleetwatch.records import Alert, AlertType, DispatchOrder, Fix
from geofence import Rules
from streams.core import DetectionResult, flush, process
from tests.streams.world import context, fix, ts


def run(rules: Rules, fixes: Iterable[Fix], orders: list[DispatchOrder] | None = None) -> DetectionResult:
    ctx = context(rules, orders)
    result = DetectionResult()
    state = None
    for f in fixes:
        state, events = process(state, f, ctx)
        result.apply(events)
    if state is not None:
        result.apply(flush(state, ctx))
        result.duplicates += state.duplicates
        result.reevaluated += state.reevaluated
        result.outliers += state.outliers
    return result


def drive(
    start: str,
    lat: float,
    lon: float,
    *,
    minutes: float,
    step_s: int = 30,
    speed: float = 40.0,
    dlat: float = 0.0,
    dlon: float | None = None,
    acc: bool = True,
) -> list[Fix]:
    """Fixes every `step_s` seconds for `minutes`, moving by (dlat, dlon) per fix.

    By default it heads east at `speed` (lon step derived from speed at latitude 32)."""
    if dlon is None:
        dlon = speed / 3.6 * step_s / 94_400.0  # metres per degree of longitude at 32 N
    t0 = ts(start)
    out = []
    for i in range(int(minutes * 60 / step_s) + 1):
        when = (t0 + timedelta(seconds=i * step_s)).strftime("%Y-%m-%d %H:%M:%S")
        out.append(fix(when, lat + i * dlat, lon + i * dlon, speed, acc))
    return out


def park(
    start: str, lat: float, lon: float, *, minutes: float, step_s: int = 60, acc: bool = False
) -> list[Fix]:
    return drive(start, lat, lon, minutes=minutes, step_s=step_s, speed=0.0, dlon=0.0, acc=acc)


def of_type(result: DetectionResult, kind: AlertType) -> list[Alert]:
    return [a for a in result.sorted_alerts() if a.type is kind]


def last(fixes: list[Fix]) -> Fix:
    return fixes[-1]
