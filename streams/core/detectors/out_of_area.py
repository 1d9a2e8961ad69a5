"""Out-of-area use: an excursion beyond the permitted region's buffer, with hysteresis."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from datetime import datetime

from fleetwatch.records import AlertType, Severity
from streams.core.detector import Env, Exemption, candidate, escalate, secs, severity_of
from streams.core.enrich import Enriched


@dataclass(slots=True)
class ExcursionState:
    first_ts: datetime | None = None  # None: inside (no excursion)
    first_lat: float = 0.0
    first_lon: float = 0.0
    last_out_ts: datetime | None = None
    beyond_fixes: int = 0
    last_beyond_ts: datetime | None = None
    inside_since: datetime | None = None
    inside_fixes: int = 0
    raised_at: datetime | None = None  # when it qualified (None: not yet)
    severity: Severity | None = None
    #: positions beyond the buffer, packed as microdegrees (lat, lon, lat, lon, ...): an order's
    #: destination area must contain them all; an hour-long excursion stays a few KB
    points: array[int] = field(default_factory=lambda: array("i"))

    def add_point(self, lat: float, lon: float) -> None:
        self.points.extend((round(lat * 1e6), round(lon * 1e6)))

    def point_list(self) -> tuple[tuple[float, float], ...]:
        p = self.points
        return tuple((p[i] / 1e6, p[i + 1] / 1e6) for i in range(0, len(p), 2))


class OutOfArea:
    """Outside the permitted region beyond the buffer starts an excursion; it ends only when the
    vehicle is back inside by more than the buffer, or inside for out_of_area_min_seconds and
    out_of_area_min_fixes: GPS jitter within the buffer neither starts nor ends one.
    Severity grades the seconds outside (first .. last fix outside)."""

    name = "out_of_area"
    needs: tuple[str, ...] = ()
    alert_type = AlertType.OUT_OF_AREA
    exemption = Exemption.PLACE

    def new_state(self) -> ExcursionState:
        return ExcursionState()

    def step(self, x: ExcursionState, ef: Enriched, env: Env) -> ExcursionState:
        vc = env.vc
        if not ef.valid or ef.region_out_m is None or vc.region is None:
            return x
        s = vc.settings
        ts = ef.fix.ts
        dist = ef.region_out_m
        if x.first_ts is None:
            if dist > s.region_buffer_m:
                x = ExcursionState(ts, ef.lat, ef.lon, ts, 1, ts)
                x.add_point(ef.lat, ef.lon)
            return x
        if dist > 0:
            x.last_out_ts = ts
            x.inside_since, x.inside_fixes = None, 0
            if dist > s.region_buffer_m:
                x.beyond_fixes += 1
                x.last_beyond_ts = ts
                x.add_point(ef.lat, ef.lon)
            if not self._qualifies(x, env):
                return x
            now = escalate(x.severity, severity_of(AlertType.OUT_OF_AREA, secs(x.first_ts, ts), vc))
            if x.raised_at is None or now != x.severity:  # first qualified, or grown red: (re)raise open
                x.raised_at = x.raised_at or ts
                x.severity = now
                self._raise(x, env, None)
            return x
        if x.inside_since is None:
            x.inside_since = ts
        x.inside_fixes += 1
        depth = vc.region.boundary_distance_m(ef.lat, ef.lon)
        settled = x.inside_fixes >= s.out_of_area_min_fixes
        settled = settled and secs(x.inside_since, ts) >= s.out_of_area_min_seconds
        back = depth > s.region_buffer_m or settled
        return self._end(x, env) if back else x

    def close(self, x: ExcursionState, env: Env) -> ExcursionState:
        return self._end(x, env)

    def _qualifies(self, x: ExcursionState, env: Env) -> bool:
        s = env.vc.settings
        if x.first_ts is None or x.last_beyond_ts is None:
            return False
        return (
            x.beyond_fixes >= s.out_of_area_min_fixes
            and secs(x.first_ts, x.last_beyond_ts) >= s.out_of_area_min_seconds
        )

    def _end(self, x: ExcursionState, env: Env) -> ExcursionState:
        if x.first_ts is not None and x.last_out_ts is not None and self._qualifies(x, env):
            measured = severity_of(AlertType.OUT_OF_AREA, secs(x.first_ts, x.last_out_ts), env.vc)
            x.severity = escalate(x.severity, measured)
            x.raised_at = x.raised_at or x.last_beyond_ts
            self._raise(x, env, x.last_out_ts)
        return ExcursionState()

    def _raise(self, x: ExcursionState, env: Env, end: datetime | None) -> None:
        assert x.first_ts is not None and x.raised_at is not None and x.severity is not None
        vc = env.vc
        details = {"region": vc.region.id if vc.region else None, "fixes_outside": x.beyond_fixes}
        candidate(
            self, env, start=x.first_ts, end=end, lat=x.first_lat, lon=x.first_lon, raised_at=x.raised_at,
            details=details, severity=x.severity, final=end is not None, points=x.point_list(),
        )  # fmt: skip


DETECTOR = OutOfArea()
