"""The detector protocol (one detector = one unit) and the small helpers every detector shares.

A detector is an object with:

* `name` — unique; the key of its state in the vehicle's state and of what it posts;
* `needs` — names of detectors whose posts it reads for the same fix (they run before it);
* `alert_type` — the alert type it raises (None for the trip segmenter);
* `exemption` — the dispatch-order rule the exempt stage applies to its alerts;
* `new_state()` — its own state (plain, picklable data; None for stateless detectors);
* `step(state, fix, env) -> state` — one released fix; appends findings to `env.out`;
* `close(state, env) -> state` — end of input: close whatever episode is open.

The pipeline holds the states by detector name and copies them generically (checkpoints are
pickled bytes), so a detector never writes a clone() and nothing else imports its state type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from fleetwatch.records import Alert, AlertType, Severity
from streams.core.context import VehicleContext
from streams.core.enrich import Enriched
from streams.core.events import Event

S = TypeVar("S")


class Exemption(StrEnum):
    """Which approved dispatch orders exempt a detector's alerts (DESIGN §3)."""

    NONE = "none"  # no order exempts it
    COVERING = "covering"  # an order whose span contains the alert's whole span (off_hours)
    PLACE = "place"  # an order overlapping the span whose destination area holds its points
    RUNNING = "running"  # an order running at the alert's instant (depot_night: away on duty)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert a detector found; `final` once its episode is over (else it is still open)."""

    alert: Alert
    final: bool
    exemption: Exemption
    #: Positions (lat, lon) that an order's destination area must contain to exempt it.
    points: tuple[tuple[float, float], ...] = ()


Output = list[Event | Candidate]


@dataclass(slots=True)
class LastFix:
    """The vehicle's previous released fix, as detectors comparing with it need it."""

    ts: datetime | None = None
    acc: bool = False
    #: last trusted valid position (lat, lon)
    position: tuple[float, float] | None = None


@dataclass(slots=True)
class Env:
    """What a detector sees besides its own state and the fix."""

    vc: VehicleContext
    prev: LastFix
    out: Output
    #: what detectors earlier in the order posted for this fix, by detector name
    posted: dict[str, list[Any]] = field(default_factory=dict)

    def post(self, name: str, item: Any) -> None:
        self.posted.setdefault(name, []).append(item)


class Detector(Protocol[S]):
    # Read-only members: implementations declare them as plain class attributes.
    @property
    def name(self) -> str: ...

    @property
    def needs(self) -> tuple[str, ...]: ...

    @property
    def alert_type(self) -> AlertType | None: ...

    @property
    def exemption(self) -> Exemption: ...

    def new_state(self) -> S: ...

    def step(self, state: S, ef: Enriched, env: Env) -> S: ...

    def close(self, state: S, env: Env) -> S: ...


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def secs(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


def stationary(ef: Enriched, vc: VehicleContext) -> bool:
    return (not ef.fix.acc) or ef.fix.speed_kmh < vc.settings.stationary_speed_kmh


def severity_of(kind: AlertType, measure: float, vc: VehicleContext) -> Severity:
    """Yellow once it qualifies; red once `measure` reaches the org's red threshold for `kind`."""
    red = vc.settings.severity_red.get(kind.value)
    return Severity.RED if red is not None and measure >= red else Severity.YELLOW


def escalate(previous: Severity | None, now: Severity) -> Severity:
    """Within one episode a severity may rise, never fall."""
    return now if previous is None or now.rank >= previous.rank else previous


def candidate(
    detector: Detector[Any],
    env: Env,
    *,
    start: datetime,
    end: datetime | None,
    lat: float,
    lon: float,
    raised_at: datetime,
    details: dict[str, Any],
    severity: Severity,
    final: bool,
    points: tuple[tuple[float, float], ...] = (),
    trip_id: str | None = None,
) -> None:
    """Append an alert candidate of `detector`'s type to the output."""
    assert detector.alert_type is not None
    vc = env.vc
    kind = detector.alert_type
    alert = Alert.new(
        kind, vc.vehicle_id, vc.org, start, end, lat, lon, raised_at, details, trip_id, severity
    )
    env.out.append(Candidate(alert, final, detector.exemption, points))
