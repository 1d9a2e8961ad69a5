"""Geodetic datums: the public GCJ-02 ("Mars coordinates") offset and its iterative inverse.

GCJ-02 is WGS-84 plus a deterministic, non-linear offset (a few hundred metres in China and none
outside it). The forward formulas are the widely published ones; the inverse has no closed form,
so it is solved by fixed-point iteration, which converges to well under a centimetre.
"""

from __future__ import annotations

import math
from enum import StrEnum

# Krasovsky 1940 ellipsoid, as used by the published GCJ-02 formulas.
_A = 6378245.0
_EE = 0.00669342162296594323


class Datum(StrEnum):
    WGS84 = "WGS-84"
    GCJ02 = "GCJ-02"


def _outside_china(lat: float, lon: float) -> bool:
    # The published algorithm applies no offset outside this rough box.
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _delta_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _delta_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS-84 (lat, lon) -> GCJ-02 (lat, lon)."""
    if _outside_china(lat, lon):
        return lat, lon
    dlat = _delta_lat(lon - 105.0, lat - 35.0)
    dlon = _delta_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = 1.0 - _EE * math.sin(radlat) ** 2
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float, *, tolerance_deg: float = 1e-10) -> tuple[float, float]:
    """GCJ-02 (lat, lon) -> WGS-84 (lat, lon), inverting the forward transform by iteration."""
    wlat, wlon = lat, lon
    for _ in range(30):
        glat, glon = wgs84_to_gcj02(wlat, wlon)
        err_lat, err_lon = glat - lat, glon - lon
        wlat -= err_lat
        wlon -= err_lon
        if abs(err_lat) < tolerance_deg and abs(err_lon) < tolerance_deg:
            break
    return wlat, wlon


def parse_datum(value: object) -> Datum:
    """The datum a zone file declares; anything else is an error (raised as ValueError)."""
    if not isinstance(value, str):
        raise ValueError(f'missing datum: declare "datum": "WGS-84" or "GCJ-02" (got {value!r})')
    normalised = value.strip().upper().replace("_", "-")
    aliases = {"WGS-84": Datum.WGS84, "WGS84": Datum.WGS84, "GCJ-02": Datum.GCJ02, "GCJ02": Datum.GCJ02}
    if normalised not in aliases:
        raise ValueError(f"unknown datum {value!r}: expected 'WGS-84' or 'GCJ-02'")
    return aliases[normalised]
