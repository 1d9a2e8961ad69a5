"""The pure detection core: (per-vehicle state, fix, rules) -> (state, events), in event time.

The same code runs in the stream workers and offline (`fleetwatch detect`). See `pipeline` for
the declared stage order, the late-fix policy, the alert lifecycle and the persisted/replay
split of the state (`dump_state` / `load_state`); `detector` for the detector protocol and
`detectors` for the registry (one module per detector).
"""

from streams.core.context import Context, VehicleContext
from streams.core.detector import Candidate, Detector, Exemption
from streams.core.detectors import DETECTORS
from streams.core.enrich import Enriched, enrich
from streams.core.events import Event, EventKind
from streams.core.exempt import exempt
from streams.core.offline import DeadLetter, DetectionResult, detect_lines
from streams.core.orders import OrderBook
from streams.core.pipeline import STAGES, VehicleState, dump_state, flush, load_state, new_state, process

__all__ = [
    "DETECTORS",
    "STAGES",
    "Candidate",
    "Context",
    "DeadLetter",
    "DetectionResult",
    "Detector",
    "Enriched",
    "Event",
    "EventKind",
    "Exemption",
    "OrderBook",
    "VehicleContext",
    "VehicleState",
    "detect_lines",
    "dump_state",
    "enrich",
    "exempt",
    "flush",
    "load_state",
    "new_state",
    "process",
]
