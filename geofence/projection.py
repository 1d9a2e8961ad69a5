"""A local metric projection (equirectangular around a chosen centre) for metre-based geometry.

x = R * (lon - lon0) * cos(lat0), y = R * (lat - lat0), with R the mean Earth radius. Within a few
tens of kilometres of the centre the scale error is below 1 % (it grows with the latitude offset
by about 0.9 % per degree at Nanjing's latitude), which is ample for 50-500 m buffers, circles and
boundary distances. Each zone gets its own frame centred on the zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import shapely
from shapely.geometry.base import BaseGeometry

EARTH_RADIUS_M = 6371008.8
_DEG = math.pi / 180.0


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """Equirectangular frame centred on (lat0, lon0); units are metres."""

    lat0: float
    lon0: float

    @property
    def kx(self) -> float:
        return EARTH_RADIUS_M * _DEG * math.cos(self.lat0 * _DEG)

    @property
    def ky(self) -> float:
        return EARTH_RADIUS_M * _DEG

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def project(self, geom: BaseGeometry) -> BaseGeometry:
        kx, ky, lon0, lat0 = self.kx, self.ky, self.lon0, self.lat0
        return shapely.transform(geom, lambda c: (c - (lon0, lat0)) * (kx, ky))

    def unproject(self, geom: BaseGeometry) -> BaseGeometry:
        kx, ky, lon0, lat0 = self.kx, self.ky, self.lon0, self.lat0
        return shapely.transform(geom, lambda c: c / (kx, ky) + (lon0, lat0))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = lat1 * _DEG, lat2 * _DEG
    dp = p2 - p1
    dl = (lon2 - lon1) * _DEG
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
