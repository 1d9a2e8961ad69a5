"""Plausibility screen: a fix whose position implies a jump its neighbours' speeds cannot explain
is an outlier; its position is not used for distance or zone tests (the fix itself is kept: its
time, ignition and alarm still count, and the outlier is counted in the summary).

Judging a fix needs the next valid one, so the screen holds one fix (plus invalid ones behind
it) until its successor is released: detection runs one fix behind the reorder stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from geofence import haversine_m
from streams.core.packed import ROW

#: Legs shorter than this are never jumps (GPS noise, slow manoeuvres).
JUMP_MIN_M = 150.0
#: A leg is too fast when its implied speed exceeds the faster reported speed at its ends by
#: this factor plus margin (Traccar's filters compare implied with plausible speed likewise).
SPEED_FACTOR = 1.25
SPEED_MARGIN_MS = 3.0
#: A gap this long before a fix is a silence: the leg into it cannot judge it.
SILENCE_S = 60.0


class Point(NamedTuple):
    ts_us: int
    lat: float
    lon: float
    speed_kmh: float


@dataclass(slots=True)
class Screen:
    #: the fix being judged, then invalid fixes waiting behind it (packed rows)
    queue: list[bytes] = field(default_factory=list)
    #: the last trusted valid fix (a plain tuple: it is persisted with every fix)
    anchor: tuple[int, float, float, float] | None = None
    outliers: int = 0


def _point(row: bytes) -> tuple[Point, bool]:
    us, lat, lon, speed, _seq, _alarm, _off, flags, _dev = ROW.unpack(row)
    valid = not (flags & 2 and not flags & 4)  # fix_valid known and false: position is stale
    return Point(us, lat, lon, speed), valid


def _too_fast(a: Point, b: Point) -> bool:
    metres = haversine_m(a.lat, a.lon, b.lat, b.lon)
    if metres <= JUMP_MIN_M:
        return False
    seconds = max(1.0, (b.ts_us - a.ts_us) / 1e6)
    plausible = max(a.speed_kmh, b.speed_kmh) / 3.6 * SPEED_FACTOR + SPEED_MARGIN_MS
    return metres / seconds > plausible


def _outlier(anchored: tuple[int, float, float, float] | None, k: Point, n: Point) -> bool:
    """k jumped if the leg to its successor is too fast, the leg into it too (or it ends a
    silence, which cannot judge it), and going straight from the anchor to n is plausible."""
    if anchored is None or not _too_fast(k, n):
        return False
    anchor = Point(*anchored)
    into = _too_fast(anchor, k) or (k.ts_us - anchor.ts_us) / 1e6 >= SILENCE_S
    return into and not _too_fast(anchor, n)


def feed(sc: Screen, row: bytes) -> list[tuple[bytes, bool]]:
    """Take one released row; return the rows now judged, in order, with their outlier flag."""
    point, valid = _point(row)
    if not valid or not sc.queue:
        if sc.queue:
            sc.queue.append(row)
            return []
        if not valid:
            return [(row, False)]
        sc.queue = [row]
        return []
    k, _ = _point(sc.queue[0])
    jumped = _outlier(sc.anchor, k, point)
    if jumped:
        sc.outliers += 1
    else:
        sc.anchor = (k.ts_us, k.lat, k.lon, k.speed_kmh)
    released = [(sc.queue[0], jumped), *((r, False) for r in sc.queue[1:])]
    sc.queue = [row]
    return released


def drain(sc: Screen) -> list[tuple[bytes, bool]]:
    """Release what is held, judging the first fix without a successor (trusted)."""
    if not sc.queue:
        return []
    k = _point(sc.queue[0])[0]
    sc.anchor = (k.ts_us, k.lat, k.lon, k.speed_kmh)
    released = [(r, False) for r in sc.queue]
    sc.queue = []
    return released
