"""What the core needs besides the per-vehicle state: rules, orders, and per-vehicle lookups."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from fleetwatch.settings import LATE_HORIZON_SECONDS, SNAPSHOT_EVERY_SECONDS
from geofence import OrgSettings, Rules, WorkCalendar, Zone
from streams.core.orders import OrderBook


@dataclass
class Context:
    """Shared, read-mostly inputs: the loaded rules and the approved dispatch orders."""

    rules: Rules
    orders: OrderBook = field(default_factory=OrderBook)
    #: How far back a late fix can still be re-evaluated (event time, seconds). Entry points pass
    #: `Settings.late_horizon_seconds` (env FLEETWATCH_LATE_HORIZON_SECONDS); same default.
    late_horizon_seconds: float = LATE_HORIZON_SECONDS
    #: How often (event time) a vehicle's detector state is checkpointed for re-evaluation.
    snapshot_every_seconds: float = SNAPSHOT_EVERY_SECONDS
    _vehicles: dict[str, VehicleContext] = field(default_factory=dict)

    def vehicle(self, vehicle_id: str) -> VehicleContext:
        vc = self._vehicles.get(vehicle_id)
        if vc is None:
            settings = self.rules.settings_for(vehicle_id)
            vc = VehicleContext(
                vehicle_id=vehicle_id,
                org=self.rules.org_of(vehicle_id),
                settings=settings,
                tz=settings.tz,
                calendar=self.rules.calendar,
                region=self.rules.region_of(vehicle_id),
                depot=self.rules.depot_of(vehicle_id),
                sensitive_categories=settings.sensitive_categories,
                orders=self.orders,
                rules=self.rules,
            )
            self._vehicles[vehicle_id] = vc
        return vc


@dataclass(frozen=True)
class VehicleContext:
    vehicle_id: str
    org: str
    settings: OrgSettings
    tz: ZoneInfo
    calendar: WorkCalendar
    region: Zone | None
    depot: Zone | None
    sensitive_categories: frozenset[str]
    orders: OrderBook
    rules: Rules
