"""The pure detection core: (per-vehicle state, fix, rules) -> (state, events), in event time.

The same code runs in the stream workers and offline (`fleetwatch detect`). See `pipeline` for
the declared stage order and the late-fix policy, `detectors` for each detector.
"""

from streams.core.context import Context, VehicleContext
from streams.core.detectors import DETECTORS, Candidate, DetectorState
from streams.core.enrich import Enriched, enrich
from streams.core.events import Event, EventKind
from streams.core.offline import DeadLetter, DetectionResult, detect_lines
from streams.core.orders import OrderBook
from streams.core.pipeline import STAGES, VehicleState, exempt, flush, new_state, process

__all__ = [
    "DETECTORS",
    "STAGES",
    "Candidate",
    "Context",
    "DeadLetter",
    "DetectionResult",
    "DetectorState",
    "Enriched",
    "Event",
    "EventKind",
    "OrderBook",
    "VehicleContext",
    "VehicleState",
    "detect_lines",
    "enrich",
    "exempt",
    "flush",
    "new_state",
    "process",
]
