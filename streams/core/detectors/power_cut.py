"""Power cut: JT/T 808 alarm bit 8 (main power cut) while the ignition is on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleetwatch.records import AlertType
from streams.core.detector import Env, Exemption, candidate, secs, severity_of
from streams.core.enrich import Enriched

POWER_CUT_BIT = 1 << 8  # JT/T 808 alarm bit 8: main power cut


@dataclass(slots=True)
class CutState:
    first_ts: datetime | None = None  # None: no cut in progress
    last_ts: datetime | None = None
    lat: float = 0.0
    lon: float = 0.0
    fixes: int = 0


class PowerCut:
    """Qualifies on its first fix (open alert, raised then); final at the first fix without it."""

    name = "power_cut"
    needs: tuple[str, ...] = ()
    alert_type = AlertType.POWER_CUT
    exemption = Exemption.NONE

    def new_state(self) -> CutState:
        return CutState()

    def step(self, e: CutState, ef: Enriched, env: Env) -> CutState:
        fix = ef.fix
        if not (fix.acc and (fix.alarm or 0) & POWER_CUT_BIT):
            return self._end(e, env)
        if e.first_ts is None:
            e = CutState(fix.ts, fix.ts, ef.lat, ef.lon, 1)
            self._raise(e, env, None)
        else:
            e.last_ts, e.fixes = fix.ts, e.fixes + 1
        return e

    def close(self, e: CutState, env: Env) -> CutState:
        return self._end(e, env)

    def _end(self, e: CutState, env: Env) -> CutState:
        if e.first_ts is not None and e.last_ts is not None:
            self._raise(e, env, e.last_ts)
        return CutState()

    def _raise(self, e: CutState, env: Env, end: datetime | None) -> None:
        assert e.first_ts is not None and e.last_ts is not None
        candidate(
            self, env, start=e.first_ts, end=end, lat=e.lat, lon=e.lon, raised_at=e.first_ts,
            details={"fixes": e.fixes}, final=end is not None,
            severity=severity_of(AlertType.POWER_CUT, secs(e.first_ts, e.last_ts), env.vc),
        )  # fmt: skip


DETECTOR = PowerCut()
