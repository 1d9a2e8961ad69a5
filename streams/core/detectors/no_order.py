"""无单出车: where an org requires orders, a trip in working time without an approved order."""

from __future__ import annotations

from fleetwatch.records import AlertType, Severity
from streams.core.detector import Env, Exemption, candidate
from streams.core.detectors.trips import ClosedTrip, TripRule


class NoOrder(TripRule):
    """For orgs with `orders_required: true`: each trip `trips` closes with driving in working
    time (off-hours driving is off_hours' business) and no approved order overlapping it. It
    qualifies when the trip is known (`raised_at` = trip end); orders are its own test, so no
    exemption stage rule applies. A trip on a date the calendar does not cover is skipped."""

    name = "no_order"
    alert_type = AlertType.NO_ORDER
    exemption = Exemption.NONE

    def judge(self, closed: list[ClosedTrip], env: Env) -> None:
        vc = env.vc
        if not vc.settings.orders_required:
            return
        for ct in closed:
            trip = ct.trip
            if ct.undetermined is not None or ct.working_s <= 0:
                continue
            if vc.orders.overlapping(vc.vehicle_id, trip.start, trip.end):
                continue
            details = {"working_seconds": round(ct.working_s), "distance_m": trip.distance_m}
            candidate(
                self, env, start=trip.start, end=trip.end, lat=trip.start_lat, lon=trip.start_lon,
                raised_at=trip.end, details=details, severity=Severity.YELLOW, final=True,
                trip_id=trip.trip_id,
            )  # fmt: skip


DETECTOR = NoOrder()
