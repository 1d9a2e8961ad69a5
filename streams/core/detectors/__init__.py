"""The detector registry: `DETECTORS` is the order the pipeline runs them in, checked at import.

Adding a detector = its own module (a class following `streams.core.detector.Detector`, exported
as `DETECTOR`) plus one line here. A detector runs after every detector it `needs` (it reads
their posts for the same fix); those comparing with the previous fix read `Env.prev`, which the
pipeline updates only after all of them have run.
"""

from __future__ import annotations

from typing import Any

from streams.core.detector import Detector
from streams.core.detectors import (
    depot_night,
    no_order,
    off_hours,
    offline,
    out_of_area,
    overspeed,
    power_cut,
    private_destination,
    trips,
)


def ordered(detectors: tuple[Detector[Any], ...]) -> tuple[Detector[Any], ...]:
    """The declared order, refused if names repeat or a detector runs before one it needs."""
    seen: set[str] = set()
    for d in detectors:
        if d.name in seen:
            raise ValueError(f"detector name {d.name!r} is registered twice")
        missing = [n for n in d.needs if n not in seen]
        if missing:
            raise ValueError(f"detector {d.name!r} needs {', '.join(missing)} to run before it")
        seen.add(d.name)
    return detectors


DETECTORS: tuple[Detector[Any], ...] = ordered(
    (
        depot_night.DETECTOR,
        offline.DETECTOR,
        trips.DETECTOR,
        off_hours.DETECTOR,
        no_order.DETECTOR,
        out_of_area.DETECTOR,
        private_destination.DETECTOR,
        overspeed.DETECTOR,
        power_cut.DETECTOR,
    )
)

__all__ = ["DETECTORS", "ordered"]
