"""Plausibility screen: a fix whose position implies a jump its neighbours' speeds cannot explain
is an outlier; its position is not used for distance or zone tests (the fix itself is kept: its
time, ignition and alarm still count, and the outlier is counted in the summary).

Judging a fix needs the next valid one, so the screen holds one fix (plus invalid ones behind
it) until its successor is released: detection runs one fix behind the reorder stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetwatch.records import Fix
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


#: (ts µs, lat, lon, speed km/h)
Point = tuple[int, float, float, float]
#: a released fix: its packed row and, on the live path, the parsed Fix (None once restored)
Item = tuple[bytes, Fix | None]


@dataclass(slots=True)
class Screen:
    #: the fix being judged, then invalid fixes waiting behind it
    queue: list[Item] = field(default_factory=list)
    #: the last trusted valid fix (a plain tuple: it is persisted with every fix)
    anchor: Point | None = None
    outliers: int = 0


def _point(row: bytes) -> tuple[Point, bool]:
    us, lat, lon, speed, _seq, _alarm, _off, flags, _dev = ROW.unpack(row)
    valid = not (flags & 2 and not flags & 4)  # fix_valid known and false: position is stale
    return (us, lat, lon, speed), valid


def _too_fast(a: Point, b: Point) -> bool:
    metres = haversine_m(a[1], a[2], b[1], b[2])
    if metres <= JUMP_MIN_M:
        return False
    seconds = max(1.0, (b[0] - a[0]) / 1e6)
    plausible = max(a[3], b[3]) / 3.6 * SPEED_FACTOR + SPEED_MARGIN_MS
    return metres / seconds > plausible


def _outlier(anchor: Point | None, k: Point, n: Point) -> bool:
    """k jumped if the leg to its successor is too fast, the leg into it too (or it ends a
    silence, which cannot judge it), and going straight from the anchor to n is plausible."""
    if anchor is None or not _too_fast(k, n):
        return False
    into = _too_fast(anchor, k) or (k[0] - anchor[0]) / 1e6 >= SILENCE_S
    return into and not _too_fast(anchor, n)


def feed(sc: Screen, item: Item) -> list[tuple[Item, bool]]:
    """Take one released fix; return the fixes now judged, in order, with their outlier flag."""
    point, valid = _point(item[0])
    queue = sc.queue
    if not queue:
        if not valid:
            return [(item, False)]
        sc.queue = [item]
        return []
    if not valid:
        queue.append(item)
        return []
    head = _point(queue[0][0])[0]
    jumped = _outlier(sc.anchor, head, point)
    if jumped:
        sc.outliers += 1
    else:
        sc.anchor = head
    released = [(queue[0], jumped), *((i, False) for i in queue[1:])]
    sc.queue = [item]
    return released


def drain(sc: Screen) -> list[tuple[Item, bool]]:
    """Release what is held, judging the first fix without a successor (trusted)."""
    if not sc.queue:
        return []
    sc.anchor = _point(sc.queue[0][0])[0]
    released = [(i, False) for i in sc.queue]
    sc.queue = []
    return released
