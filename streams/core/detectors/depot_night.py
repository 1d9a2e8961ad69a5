"""Depot at night: at the org's check time the vehicle's last known position is outside its depot."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleetwatch.records import AlertType, Severity
from streams.core.detector import Env, Exemption, candidate
from streams.core.enrich import Enriched


class DepotNight:
    """At each depot_check_time (local) between the previous fix and this one, the last known
    position must be inside the vehicle's depot. Exempted by an order running at that instant
    (away on duty: our extension of DESIGN §3)."""

    name = "depot_night"
    needs: tuple[str, ...] = ()
    alert_type = AlertType.DEPOT_NIGHT
    exemption = Exemption.RUNNING

    def new_state(self) -> datetime | None:
        return None  # then: the first check instant after the last fix (most fixes stop there)

    def step(self, next_check: datetime | None, ef: Enriched, env: Env) -> datetime | None:
        vc = env.vc
        ts = ef.fix.ts
        if vc.depot is None or (next_check is not None and ts < next_check):
            return next_check
        prev_ts, known = env.prev.ts, env.prev.position
        if prev_ts is not None and known is not None:
            day = prev_ts.astimezone(vc.tz).date()
            while True:
                check = datetime.combine(day, vc.settings.depot_check_time, vc.tz)
                if check > ts:
                    break
                if check > prev_ts:
                    self._check(check, ef, known, env)
                day += timedelta(days=1)
        day = ts.astimezone(vc.tz).date()
        at = vc.settings.depot_check_time
        check = datetime.combine(day, at, vc.tz)
        return check if check > ts else datetime.combine(day + timedelta(days=1), at, vc.tz)

    def _check(self, check: datetime, ef: Enriched, known: tuple[float, float], env: Env) -> None:
        depot = env.vc.depot
        assert depot is not None
        lat, lon = (ef.lat, ef.lon) if (check == ef.fix.ts and ef.valid) else known
        if not depot.contains(lat, lon):
            details = {"depot": depot.id, "distance_m": round(depot.distance_m(lat, lon))}
            candidate(
                self, env, start=check, end=check, lat=lat, lon=lon, raised_at=check,
                details=details, severity=Severity.YELLOW, final=True, points=((lat, lon),),
            )  # fmt: skip

    def close(self, next_check: datetime | None, env: Env) -> None:
        return None


DETECTOR = DepotNight()
