"""Private destinations: stationary inside a sensitive zone for a dwell; one alert per visit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleetwatch.records import AlertType, Severity
from streams.core.detector import Env, Exemption, candidate, escalate, secs, severity_of, stationary
from streams.core.enrich import Enriched


@dataclass(slots=True)
class VisitState:
    zone_id: str | None = None  # None: not in a visit
    category: str = ""
    zone_name: str = ""
    arrival: datetime | None = None
    last_ts: datetime | None = None  # last stationary fix in the zone
    lat: float = 0.0
    lon: float = 0.0
    raised_at: datetime | None = None  # when the dwell first qualified
    severity: Severity | None = None


class PrivateDestination:
    """Stationary inside a sensitive zone for dwell_min_seconds: an open alert when the dwell
    qualifies (again, same id, when it turns red), the final one at departure. Dwell is what the
    fixes prove: arrival to the last stationary fix in the zone."""

    name = "private_destination"
    needs: tuple[str, ...] = ()
    alert_type = AlertType.PRIVATE_DESTINATION
    exemption = Exemption.PLACE

    def new_state(self) -> VisitState:
        return VisitState()

    def step(self, v: VisitState, ef: Enriched, env: Env) -> VisitState:
        if not ef.valid:
            return v
        ts = ef.fix.ts
        still = stationary(ef, env.vc)
        if v.zone_id is not None and v.arrival is not None:
            if still and any(z.id == v.zone_id for z in ef.sensitive):
                v.last_ts = ts
                dwell = secs(v.arrival, ts)
                if dwell >= env.vc.settings.dwell_min_seconds:
                    now = escalate(v.severity, severity_of(AlertType.PRIVATE_DESTINATION, dwell, env.vc))
                    if v.raised_at is None or now != v.severity:
                        v.raised_at = v.raised_at or ts
                        v.severity = now
                        self._raise(v, env, None)
                return v
            v = self._end(v, env, ts)
        if still and ef.sensitive:
            zone = ef.sensitive[0]
            return VisitState(zone.id, zone.category or "", zone.name, ts, ts, ef.lat, ef.lon)
        return v

    def close(self, v: VisitState, env: Env) -> VisitState:
        return self._end(v, env, None)

    def _end(self, v: VisitState, env: Env, departure: datetime | None) -> VisitState:
        if v.arrival is not None and v.last_ts is not None:
            dwell = secs(v.arrival, v.last_ts)
            if dwell >= env.vc.settings.dwell_min_seconds:
                v.severity = escalate(v.severity, severity_of(AlertType.PRIVATE_DESTINATION, dwell, env.vc))
                v.raised_at = v.raised_at or v.last_ts
                self._raise(v, env, departure or v.last_ts)
        return VisitState()

    def _raise(self, v: VisitState, env: Env, departure: datetime | None) -> None:
        assert v.arrival is not None and v.raised_at is not None and v.severity is not None
        details = {
            "zone_id": v.zone_id,
            "zone_name": v.zone_name,
            "category": v.category,
            "arrival": v.arrival.isoformat(),
            "departure": departure.isoformat() if departure else None,
            "dwell_seconds": round(secs(v.arrival, departure or v.last_ts or v.arrival)),
        }
        candidate(
            self, env, start=v.arrival, end=departure, lat=v.lat, lon=v.lon, raised_at=v.raised_at,
            details=details, severity=v.severity, final=departure is not None, points=((v.lat, v.lon),),
        )  # fmt: skip


DETECTOR = PrivateDestination()
