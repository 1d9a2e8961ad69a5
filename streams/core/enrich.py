"""Enrichment: where a fix is (zones containing it, distance outside the permitted region).

Kept apart from detection: this says where the vehicle is, detectors decide what changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch.records import Fix
from geofence import Zone
from streams.core.context import VehicleContext


@dataclass(frozen=True, slots=True)
class Enriched:
    fix: Fix
    #: False for fix_valid == false or a position the screen found implausible: the position is
    #: then the last valid one, used by nothing that depends on where the vehicle is now
    #: (DESIGN/world-format: keep ignition and alarm only).
    valid: bool
    lat: float
    lon: float
    #: Sensitive zones (of the org's categories) containing the position.
    sensitive: tuple[Zone, ...]
    #: Metres outside the permitted region (0 inside); None without a region or a valid position.
    region_out_m: float | None


def enrich(
    fix: Fix, vc: VehicleContext, last_valid: tuple[float, float] | None, trusted: bool = True
) -> Enriched:
    valid = fix.fix_valid is not False and trusted
    if valid:
        lat, lon = fix.lat, fix.lon
    elif last_valid is not None:
        lat, lon = last_valid
    else:
        lat, lon = fix.lat, fix.lon
    sensitive: tuple[Zone, ...] = ()
    region_out: float | None = None
    if valid:
        hits = vc.rules.zones.containing(lat, lon)
        sensitive = tuple(z for z in hits if z.kind == "sensitive" and z.category in vc.sensitive_categories)
        if vc.region is not None:
            inside = any(z.id == vc.region.id for z in hits)
            region_out = 0.0 if inside else vc.region.distance_m(lat, lon)
    return Enriched(fix, valid, lat, lon, sensitive, region_out)
