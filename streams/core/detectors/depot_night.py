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

    def new_state(self) -> None:
        return None

    def step(self, state: None, ef: Enriched, env: Env) -> None:
        vc = env.vc
        prev_ts, known = env.prev.ts, env.prev.position
        if vc.depot is None or prev_ts is None or known is None:
            return
        ts = ef.fix.ts
        day = prev_ts.astimezone(vc.tz).date()
        while True:
            check = datetime.combine(day, vc.settings.depot_check_time, vc.tz)
            if check > ts:
                break
            if check > prev_ts:
                lat, lon = (ef.lat, ef.lon) if (check == ts and ef.valid) else known
                if not vc.depot.contains(lat, lon):
                    details = {"depot": vc.depot.id, "distance_m": round(vc.depot.distance_m(lat, lon))}
                    candidate(
                        self, env, start=check, end=check, lat=lat, lon=lon, raised_at=check,
                        details=details, severity=Severity.YELLOW, final=True, points=((lat, lon),),
                    )  # fmt: skip
            day += timedelta(days=1)

    def close(self, state: None, env: Env) -> None:
        return None


DETECTOR = DepotNight()
