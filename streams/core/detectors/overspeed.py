"""Overspeed: speed above the org's limit continuously for a minimum time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleetwatch.records import AlertType, Severity
from streams.core.detector import Env, Exemption, candidate, escalate, secs, severity_of
from streams.core.enrich import Enriched


@dataclass(slots=True)
class SpeedingState:
    first_ts: datetime | None = None  # None: not speeding
    last_ts: datetime | None = None
    lat: float = 0.0
    lon: float = 0.0
    peak_kmh: float = 0.0
    raised_at: datetime | None = None
    severity: Severity | None = None


class Overspeed:
    """Fixes over overspeed_kmh for overspeed_min_seconds: open alert when it qualifies (again
    when the peak turns it red), final at the first fix under the limit. Severity: peak km/h."""

    name = "overspeed"
    needs: tuple[str, ...] = ()
    alert_type = AlertType.OVERSPEED
    exemption = Exemption.NONE

    def new_state(self) -> SpeedingState:
        return SpeedingState()

    def step(self, e: SpeedingState, ef: Enriched, env: Env) -> SpeedingState:
        if not ef.valid:
            return e
        s = env.vc.settings
        fix = ef.fix
        if fix.speed_kmh <= s.overspeed_kmh:
            return self._end(e, env)
        if e.first_ts is None:
            return SpeedingState(fix.ts, fix.ts, ef.lat, ef.lon, fix.speed_kmh)
        e.last_ts, e.peak_kmh = fix.ts, max(e.peak_kmh, fix.speed_kmh)
        if secs(e.first_ts, fix.ts) >= s.overspeed_min_seconds:
            now = escalate(e.severity, severity_of(AlertType.OVERSPEED, e.peak_kmh, env.vc))
            if e.raised_at is None or now != e.severity:
                e.raised_at = e.raised_at or fix.ts
                e.severity = now
                self._raise(e, env, None)
        return e

    def close(self, e: SpeedingState, env: Env) -> SpeedingState:
        return self._end(e, env)

    def _end(self, e: SpeedingState, env: Env) -> SpeedingState:
        min_s = env.vc.settings.overspeed_min_seconds
        if e.first_ts is not None and e.last_ts is not None and secs(e.first_ts, e.last_ts) >= min_s:
            e.severity = escalate(e.severity, severity_of(AlertType.OVERSPEED, e.peak_kmh, env.vc))
            e.raised_at = e.raised_at or e.last_ts
            self._raise(e, env, e.last_ts)
        return SpeedingState()

    def _raise(self, e: SpeedingState, env: Env, end: datetime | None) -> None:
        assert e.first_ts is not None and e.raised_at is not None and e.severity is not None
        details = {"max_speed_kmh": e.peak_kmh, "limit_kmh": env.vc.settings.overspeed_kmh}
        candidate(
            self, env, start=e.first_ts, end=end, lat=e.lat, lon=e.lon, raised_at=e.raised_at,
            details=details, severity=e.severity, final=end is not None,
        )  # fmt: skip


DETECTOR = Overspeed()
