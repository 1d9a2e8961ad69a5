"""Offline: an event-time gap without fixes after a fix with the ignition on."""

from __future__ import annotations

from datetime import timedelta

from fleetwatch.records import AlertType
from streams.core.detector import Env, Exemption, candidate, secs, severity_of
from streams.core.enrich import Enriched


class Offline:
    """A gap longer than offline_after_seconds after a fix with acc on. It qualified
    offline_after_seconds after that fix (its `raised_at`), known when the terminal reports again;
    a buffered late upload fills the gap, and re-evaluation retracts the alert."""

    name = "offline"
    needs: tuple[str, ...] = ()
    alert_type = AlertType.OFFLINE
    exemption = Exemption.NONE

    def new_state(self) -> None:
        return None

    def step(self, state: None, ef: Enriched, env: Env) -> None:
        prev = env.prev
        if prev.ts is None or not prev.acc:
            return
        gap = secs(prev.ts, ef.fix.ts)
        after = env.vc.settings.offline_after_seconds
        if gap > after:
            lat, lon = prev.position or (ef.lat, ef.lon)
            candidate(
                self, env, start=prev.ts, end=ef.fix.ts, lat=lat, lon=lon,
                raised_at=prev.ts + timedelta(seconds=after), details={"gap_seconds": round(gap)},
                severity=severity_of(AlertType.OFFLINE, gap, env.vc), final=True,
            )  # fmt: skip

    def close(self, state: None, env: Env) -> None:
        return None


DETECTOR = Offline()
