"""Off-hours use: a closed trip with enough driving outside working time (orders: the exempt stage)."""

from __future__ import annotations

from fleetwatch.records import AlertType
from streams.core.detector import Env, Exemption, candidate, severity_of
from streams.core.detectors.trips import ClosedTrip, TripRule


class OffHours(TripRule):
    """Judges each trip `trips` closes; it qualifies when the trip is known, so `raised_at` is
    the trip's end. A trip on a date the calendar does not cover is undetermined: no alert."""

    name = "off_hours"
    alert_type = AlertType.OFF_HOURS
    exemption = Exemption.COVERING

    def judge(self, closed: list[ClosedTrip], env: Env) -> None:
        s = env.vc.settings
        for ct in closed:
            if ct.undetermined is not None:
                continue
            if ct.outside_s < s.off_hours_min_seconds and ct.outside_m < s.off_hours_min_meters:
                continue
            trip = ct.trip
            details = {
                "outside_seconds": round(ct.outside_s),
                "outside_meters": round(ct.outside_m),
                "distance_m": trip.distance_m,
            }
            candidate(
                self, env, start=trip.start, end=trip.end, lat=trip.start_lat, lon=trip.start_lon,
                raised_at=trip.end, details=details, final=True, trip_id=trip.trip_id,
                severity=severity_of(AlertType.OFF_HOURS, ct.outside_m, env.vc),
            )  # fmt: skip


DETECTOR = OffHours()
