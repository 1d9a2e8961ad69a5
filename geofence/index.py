"""A spatial index over zones (shapely 2 STRtree): which zones contain a point, fast."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from shapely import STRtree
from shapely.geometry import Point

from geofence.zones import Zone


class ZoneIndex:
    """Immutable set of zones with an R-tree; lookups return zones in insertion order."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self._zones: list[Zone] = list(zones)
        self._by_id: dict[str, Zone] = {}
        for zone in self._zones:
            if zone.id in self._by_id:
                other = self._by_id[zone.id]
                raise ValueError(f"zone id {zone.id!r} defined twice ({other.source} and {zone.source})")
            self._by_id[zone.id] = zone
        self._tree = STRtree([z.geometry for z in self._zones])

    def __len__(self) -> int:
        return len(self._zones)

    def __iter__(self) -> Iterator[Zone]:
        return iter(self._zones)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._by_id

    def get(self, zone_id: str) -> Zone:
        try:
            return self._by_id[zone_id]
        except KeyError:
            raise KeyError(f"unknown zone id {zone_id!r}") from None

    def containing(self, lat: float, lon: float, kind: str | None = None) -> list[Zone]:
        """Zones that contain (lat, lon), boundary included, optionally only of one kind."""
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        zones = [self._zones[i] for i in np.sort(hits)]
        if kind is not None:
            zones = [z for z in zones if z.kind == kind]
        return zones

    def containing_linear(self, lat: float, lon: float) -> list[Zone]:
        """The same answer by testing every zone: the benchmark's baseline."""
        point = Point(lon, lat)
        return [z for z in self._zones if z.geometry.intersects(point)]
