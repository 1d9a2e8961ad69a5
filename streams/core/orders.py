"""Approved dispatch orders by vehicle, with their destination areas ready for point tests."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from shapely.geometry import Point, shape
from shapely.prepared import PreparedGeometry, prep

from fleetwatch.records import DispatchOrder, OrderStatus


@dataclass
class _Entry:
    order: DispatchOrder
    area: PreparedGeometry | None


@dataclass
class OrderBook:
    """Approved orders per vehicle (cancelled ones are kept out: they exempt nothing)."""

    _by_vehicle: dict[str, list[_Entry]] = field(default_factory=dict)

    @classmethod
    def of(cls, orders: Iterable[DispatchOrder]) -> OrderBook:
        book = cls()
        for order in orders:
            book.add(order)
        return book

    def add(self, order: DispatchOrder) -> None:
        entries = self._by_vehicle.setdefault(order.vehicle_id, [])
        entries[:] = [e for e in entries if e.order.order_id != order.order_id]
        if order.status is not OrderStatus.APPROVED:
            return
        area = prep(shape(order.destination_area)) if order.destination_area else None
        bisect.insort(entries, _Entry(order, area), key=lambda e: e.order.start)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_vehicle.values())

    def overlapping(self, vehicle_id: str, start: datetime, end: datetime) -> list[DispatchOrder]:
        """Approved orders whose span overlaps [start, end] (a point span counts)."""
        return [e.order for e in self._entries(vehicle_id, start, end)]

    def covering(self, vehicle_id: str, start: datetime, end: datetime) -> DispatchOrder | None:
        """An approved order whose span contains the whole [start, end]."""
        for entry in self._entries(vehicle_id, start, end):
            if entry.order.covers(start, end):
                return entry.order
        return None

    def place_exemption(
        self, vehicle_id: str, start: datetime, end: datetime, points: Iterable[tuple[float, float]]
    ) -> DispatchOrder | None:
        """An approved order overlapping [start, end] whose destination area contains every point
        (docs/world-format.md: "whose destination_area contains those positions")."""
        pts = [Point(lon, lat) for lat, lon in points]
        if not pts:
            return None
        for entry in self._entries(vehicle_id, start, end):
            area = entry.area
            if area is not None and all(area.intersects(p) for p in pts):
                return entry.order
        return None

    def _entries(self, vehicle_id: str, start: datetime, end: datetime) -> list[_Entry]:
        return [
            e for e in self._by_vehicle.get(vehicle_id, ()) if e.order.start <= end and start <= e.order.end
        ]
