"""The exempt stage: approved dispatch orders turn alert candidates into EXEMPTED events (DESIGN §3).

Each candidate carries its detector's `Exemption` rule; this stage knows the rules, not the types:

* COVERING: an approved order whose span contains the alert's whole span (off_hours);
* PLACE: an approved order overlapping the span whose destination area contains the candidate's
  points (out_of_area: every fix beyond the buffer; private_destination: the place). An open
  candidate is held back while an order is running: decided when the episode is over;
* RUNNING: an approved order running at the alert's instant (depot_night, our extension);
* NONE: orders do not exempt it.
"""

from __future__ import annotations

from dataclasses import replace

from fleetwatch.records import DispatchOrder, Trip
from streams.core.context import VehicleContext
from streams.core.detector import Candidate, Exemption, Output
from streams.core.events import Event, EventKind, alert_event, trip_event


def exempt(open_alerts: set[str], out: Output, vc: VehicleContext) -> list[Event]:
    """Detector output -> events. `open_alerts` (ids emitted while still open, so a later
    exemption can retract them) is the stage's own per-vehicle state, updated in place."""
    events: list[Event] = []
    for item in out:
        if isinstance(item, Candidate):
            events.extend(_candidate(open_alerts, item, vc))
            continue
        trip = item.record
        if item.kind is EventKind.TRIP and isinstance(trip, Trip):
            cover = vc.orders.covering(vc.vehicle_id, trip.start, trip.end)
            if cover is not None:
                item = trip_event(replace(trip, order_id=cover.order_id))
        events.append(item)
    return events


def _order_for(c: Candidate, vc: VehicleContext) -> DispatchOrder | bool | None:
    """The exempting order, None, or False: hold the open candidate back for now."""
    a = c.alert
    orders = vc.orders
    end = a.end or a.raised_at
    if c.exemption is Exemption.COVERING:
        return orders.covering(vc.vehicle_id, a.start, end)
    if c.exemption is Exemption.PLACE:
        order = orders.place_exemption(vc.vehicle_id, a.start, end, c.points)
        if order is None and not c.final and orders.overlapping(vc.vehicle_id, a.start, end):
            return False
        return order
    if c.exemption is Exemption.RUNNING:
        running = orders.overlapping(vc.vehicle_id, a.start, a.start)
        return running[0] if running else None
    return None


def _candidate(open_alerts: set[str], c: Candidate, vc: VehicleContext) -> list[Event]:
    a = c.alert
    order = _order_for(c, vc)
    if order is False:
        return []
    if isinstance(order, DispatchOrder):
        events: list[Event] = []
        if a.alert_id in open_alerts:
            open_alerts.discard(a.alert_id)
            events.append(Event(EventKind.RETRACT, a.alert_id, None, {"what": "alert", "reason": "exempted"}))
        if c.final:
            detail = {"order_id": order.order_id, "alert": a.to_dict()}
            events.append(Event(EventKind.EXEMPTED, "exempt:" + a.alert_id, None, detail))
        return events
    if c.final:
        open_alerts.discard(a.alert_id)
    else:
        open_alerts.add(a.alert_id)
    return [alert_event(a)]
