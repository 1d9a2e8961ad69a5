"""Which sink handles which topic: adding a topic is its own sink module plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from sink.alerts import AlertsSink
from sink.base import TableSink
from sink.orders import OrdersSink
from sink.positions import PositionsSink
from sink.trips import TripsSink
from sink.vehicle_state import VehicleStateSink

#: table name -> factory taking the topic to read (default: the sink's own topic).
SINKS: dict[str, Callable[..., TableSink]] = {
    "positions": PositionsSink,
    "orders": OrdersSink,
    "trips": TripsSink,
    "alerts": AlertsSink,
    "vehicle_state": VehicleStateSink,
}


def make_sinks(
    tables: list[str] | None = None, topic_overrides: dict[str, str] | None = None
) -> list[TableSink]:
    """Sinks for ``tables`` (all by default); ``topic_overrides`` maps a table to another topic (tests)."""
    chosen = tables or list(SINKS)
    unknown = [t for t in chosen if t not in SINKS]
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; sinks exist for {', '.join(SINKS)}")
    overrides = topic_overrides or {}
    return [SINKS[t](overrides[t]) if t in overrides else SINKS[t]() for t in chosen]
