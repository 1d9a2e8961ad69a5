"""The scenario catalogue: each scenario drives one vehicle and yields its fixes, orders and truth."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any

import chinese_calendar
import shapely
import shapely.affinity
from shapely.geometry import MultiPoint, Point, Polygon, mapping

from fleetwatch.records import DispatchOrder, OrderStatus
from fleetwatch.settings import ORG_DEFAULTS
from simulator._geography import (
    M_PER_DEG_LAT,
    distance_outside_m,
    haversine_m,
    m_per_deg_lon,
    offset,
    straight,
)
from simulator._motion import ALARM_POWER_CUT, TZ, MotionConfig, Sample, Track, epoch, iso
from simulator._world import DEPOT_RADIUS_M, Vehicle, World

# Detection defaults (fleetwatch.settings.ORG_DEFAULTS, as detection uses them): the truth is
# computed with exactly these.
_D = ORG_DEFAULTS
OFFICE_START_S = _D.office_start.hour * 3600 + _D.office_start.minute * 60
OFFICE_END_S = _D.office_end.hour * 3600 + _D.office_end.minute * 60
OFF_HOURS_MIN_S = _D.off_hours_min_seconds
OFF_HOURS_MIN_M = _D.off_hours_min_meters
REGION_BUFFER_M = _D.region_buffer_m
OUT_OF_AREA_MIN_S = _D.out_of_area_min_seconds
OUT_OF_AREA_MIN_FIXES = _D.out_of_area_min_fixes
STATIONARY_KMH = _D.stationary_speed_kmh
DWELL_MIN_S = _D.dwell_min_seconds
OVERSPEED_KMH = _D.overspeed_kmh
OVERSPEED_MIN_S = _D.overspeed_min_seconds
OFFLINE_AFTER_S = _D.offline_after_seconds


def _first(days: list[date], weekday: int | None = None) -> date:
    for d in days:
        if weekday is None or d.weekday() == weekday:
            return d
    raise LookupError("chinese_calendar has no such 2026 date")


def _dates_2026() -> dict[str, date]:
    """Real 2026 dates from the State Council schedule (via chinese_calendar), all before 2026-11-28."""
    span = [date(2026, 1, 1) + timedelta(days=i) for i in range((date(2026, 11, 27) - date(2026, 1, 1)).days)]
    makeup = [d for d in span if d.weekday() >= 5 and chinese_calendar.is_workday(d)]
    holidays = [d for d in span if d.weekday() < 5 and chinese_calendar.is_holiday(d)]
    weekends = [d for d in span if d.weekday() == 5 and chinese_calendar.is_holiday(d) and d.month == 11]
    workdays = [d for d in span if d.weekday() == 2 and chinese_calendar.is_workday(d) and d.month == 11]
    return {
        "workday": workdays[-1],  # a recent Wednesday (the next day is a working day too)
        "weekend": weekends[-1],
        "holiday": _first([d for d in holidays if d.month == 10]),  # National Day
        "makeup_saturday": _first(makeup, 5),
        "makeup_sunday": _first(makeup, 6),
    }


DATES = _dates_2026()


@cache
def is_workday(day: date) -> bool:
    return bool(chinese_calendar.is_workday(day))


def off_work(t: int) -> bool:
    """Outside working time: a non-working day (incl. 调休 rules) or outside office hours."""
    local = datetime.fromtimestamp(t, TZ)
    secs = local.hour * 3600 + local.minute * 60 + local.second
    return not is_workday(local.date()) or not OFFICE_START_S <= secs < OFFICE_END_S


def at(day: date, hh: int, mm: int = 0) -> int:
    return epoch(datetime.combine(day, time(hh, mm), TZ))


# --------------------------------------------------------------------------------------------
# a scenario run
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    scenario: str
    vehicle: Vehicle
    samples: list[Sample]  # every report the terminal made, event order
    received: list[Sample]  # what is actually sent (outages without upload remove some)
    drives: list[Any]
    orders: list[DispatchOrder] = field(default_factory=list)
    no_alert: list[dict[str, Any]] = field(default_factory=list)
    intended: set[str] = field(default_factory=set)


@dataclass
class Ctx:
    world: World
    vehicle: Vehicle
    rng: random.Random
    motion: MotionConfig
    scenario: str

    def track(self, day: date) -> Track:
        u = self.vehicle.unit
        tr = Track(self.rng, self.motion, at(day, 0), u.depot_lat, u.depot_lon)
        tr.park_until(tr.t, spot_jitter_m=40.0)
        return tr

    def node_here(self, tr: Track) -> int:
        return self.world.geo.graph.nearest(tr.lat, tr.lon, self.vehicle.city)

    def route(self, tr: Track, node: int, city_only: bool = True) -> list[tuple[float, float]]:
        g = self.world.geo.graph
        return g.route(self.node_here(tr), node, self.vehicle.city if city_only else None)

    def destination(self, tr: Track, lo_m: float = 2500.0, hi_m: float = 12000.0) -> int:
        g = self.world.geo.graph
        depot = self.vehicle.unit.depot_node
        options = [
            n
            for n in self.world.geo.destinations[self.vehicle.city]
            if n != depot and lo_m <= haversine_m(tr.lat, tr.lon, *g.nodes[n]) <= hi_m
        ]
        return self.rng.choice(options)

    def go_home(self, tr: Track, cruise: float = 45.0) -> None:
        tr.drive(self.route(tr, self.vehicle.unit.depot_node), cruise)
        tr.park_until(tr.t, spot_jitter_m=40.0)

    def expect_none(self, kind: str, start: int, end: int, note: str) -> dict[str, Any]:
        return {
            "type": kind,
            "vehicle_id": self.vehicle.vehicle_id,
            "start": iso(start),
            "end": iso(end),
            "scenario": self.scenario,
            "note": note,
            "expect": False,
        }

    def order(self, start: int, end: int, purpose: str, destination: str, area: Any = None) -> DispatchOrder:
        v = self.vehicle
        return DispatchOrder(
            order_id=f"PC-{datetime.fromtimestamp(start, TZ):%Y%m%d}-{v.device_id}",
            vehicle_id=v.vehicle_id,
            org=v.org,
            start=datetime.fromtimestamp(start, TZ),
            end=datetime.fromtimestamp(end, TZ),
            purpose=purpose,
            destination=destination,
            status=OrderStatus.APPROVED,
            destination_area=area,
        )


def _finish(ctx: Ctx, tr: Track, day: date, **kw: Any) -> Run:
    tr.park_until(at(day + timedelta(days=1), 0) - 1)
    return Run(ctx.scenario, ctx.vehicle, tr.samples, tr.samples, tr.drives, **kw)


def _errand(ctx: Ctx, tr: Track, depart: int, stay_s: int, cruise: float = 45.0) -> None:
    """Depot -> an ordinary destination -> stay -> back to the depot."""
    tr.park_until(depart)
    tr.drive(ctx.route(tr, ctx.destination(tr)), cruise)
    tr.park_until(tr.t + stay_s, spot_jitter_m=20.0)
    ctx.go_home(tr, cruise)


# --------------------------------------------------------------------------------------------
# the scenarios
# --------------------------------------------------------------------------------------------


def sc_workday(ctx: Ctx, day: date | None = None) -> Run:
    """Ordinary working day: two or three errands between 08:30 and 17:30, no alert."""
    day = day or DATES["workday"]
    tr = ctx.track(day)
    tr.park_until(at(day, 8, 30) + ctx.rng.randint(0, 3600))
    for _ in range(ctx.rng.randint(2, 3)):
        if tr.t > at(day, 15, 0):
            break
        tr.drive(ctx.route(tr, ctx.destination(tr)), 45.0)
        tr.park_until(tr.t + ctx.rng.randint(20, 70) * 60, spot_jitter_m=20.0)
    ctx.go_home(tr)
    run = _finish(ctx, tr, day)
    run.no_alert = [ctx.expect_none("off_hours", d.start, d.end, "working-day trip") for d in tr.drives]
    return run


def _off_hours_day(name: str, day_key: str, hh: int, mm: int = 0) -> Callable[[Ctx, date | None], Run]:
    def scenario(ctx: Ctx, day: date | None = None) -> Run:
        d = day or DATES[day_key]
        tr = ctx.track(d)
        _errand(ctx, tr, at(d, hh, mm), 3600)
        run = _finish(ctx, tr, d, intended={"off_hours"})
        return run

    scenario.__doc__ = name
    return scenario


sc_weekend = _off_hours_day("Saturday errand without an order: off_hours per trip.", "weekend", 10)
sc_holiday = _off_hours_day("Errand on a statutory holiday (National Day): off_hours.", "holiday", 10)
sc_night = _off_hours_day("Working-day errand at 20:30: off_hours.", "workday", 20, 30)


def _makeup(day_key: str) -> Callable[[Ctx, date | None], Run]:
    def scenario(ctx: Ctx, day: date | None = None) -> Run:
        d = day or DATES[day_key]
        tr = ctx.track(d)
        _errand(ctx, tr, at(d, 9), 3600)
        run = _finish(ctx, tr, d)
        run.no_alert = [
            ctx.expect_none("off_hours", x.start, x.end, "make-up working day (调休)") for x in tr.drives
        ]
        return run

    scenario.__doc__ = f"Errand on a make-up working {day_key.split('_')[1]} (调休): legitimate, no alert."
    return scenario


sc_makeup_saturday = _makeup("makeup_saturday")
sc_makeup_sunday = _makeup("makeup_sunday")


def _zhenjiang_trip(ctx: Ctx, tr: Track, day: date) -> None:
    g = ctx.world.geo.graph
    zj = min(ctx.world.geo.destinations["js.zj"], key=lambda n: haversine_m(32.18, 119.45, *g.nodes[n]))
    tr.park_until(at(day, 9))
    tr.drive(ctx.route(tr, zj, city_only=False), 70.0)
    tr.park_until(tr.t + 3600, spot_jitter_m=20.0)
    tr.drive(g.route(zj, ctx.vehicle.unit.depot_node), 70.0)
    tr.park_until(tr.t, spot_jitter_m=40.0)


def sc_out_of_area(ctx: Ctx, day: date | None = None) -> Run:
    """Working-day trip to Zhenjiang without an order: one out_of_area excursion."""
    day = day or DATES["workday"]
    tr = ctx.track(day)
    _zhenjiang_trip(ctx, tr, day)
    return _finish(ctx, tr, day, intended={"out_of_area"})


def sc_order_out_of_area(ctx: Ctx, day: date | None = None) -> Run:
    """The same trip to Zhenjiang, covered by an approved order whose area contains it: no alert."""
    day = day or DATES["workday"]
    tr = ctx.track(day)
    _zhenjiang_trip(ctx, tr, day)
    region = ctx.world.geo.city(ctx.vehicle.city).polygon
    outside = [(s.lon, s.lat) for s in tr.samples if s.valid and not region.contains(Point(s.lon, s.lat))]
    # 0.02 degrees (~2 km) around every outside position: the order's area surely contains them
    area = MultiPoint(outside).convex_hull.buffer(0.02)
    geometry = {"type": "Polygon", "coordinates": mapping(area)["coordinates"]}
    order = ctx.order(at(day, 8, 30), at(day, 13), "赴镇江市公务联络", "镇江市", _round_geometry(geometry))
    run = _finish(ctx, tr, day, orders=[order])
    return run


def _round_geometry(geometry: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": geometry["type"],
        "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring] for ring in geometry["coordinates"]],
    }


def sc_order_off_hours(ctx: Ctx, day: date | None = None) -> Run:
    """Saturday errand covered by an approved dispatch order: no alert."""
    day = day or DATES["weekend"]
    tr = ctx.track(day)
    _errand(ctx, tr, at(day, 10), 3600)
    order = ctx.order(at(day, 9, 30), at(day, 14), "周末应急值守", "市内")
    return _finish(ctx, tr, day, orders=[order])


def _place_trip(ctx: Ctx, zone_id: str, dwell: bool, day: date | None) -> Run:
    d = day or DATES["workday"]
    g = ctx.world.geo.graph
    place = ctx.world.geo.place(zone_id)
    node = g.nearest(place.lat, place.lon, ctx.vehicle.city)
    tr = ctx.track(d)
    tr.park_until(at(d, 9) + ctx.rng.randint(0, 1800))
    if dwell:
        tr.drive(ctx.route(tr, node), 40.0, critical=True)
        tr.park_until(tr.t + 40 * 60, spot_jitter_m=min(25.0, place.radius_m / 4))
        ctx.go_home(tr)
        return _finish(ctx, tr, d, intended={"private_destination"})
    onward = ctx.destination(tr)
    path = ctx.route(tr, node) + g.route(node, onward, ctx.vehicle.city)[1:]
    drive = tr.drive(path, 40.0, critical=True)
    tr.park_until(tr.t + 1800, spot_jitter_m=20.0)
    ctx.go_home(tr)
    run = _finish(ctx, tr, d)
    run.no_alert = [ctx.expect_none("private_destination", drive.start, drive.end, f"drive-by {zone_id}")]
    return run


def _place_scenario(zone_id: str, dwell: bool) -> Callable[[Ctx, date | None], Run]:
    def scenario(ctx: Ctx, day: date | None = None) -> Run:
        return _place_trip(ctx, zone_id, dwell, day)

    what = "40 min stop (private_destination)" if dwell else "drive-by without stopping (no alert)"
    scenario.__doc__ = f"{zone_id}: {what}."
    return scenario


#: the Nanjing sensitive place used for each category
PLACE_FOR = {
    "golf": "sens-golf-zhongshan",
    "ktv": "sens-ktv-xinjiekou",
    "scenic": "sens-scenic-xuanwu",
    "resort": "sens-resort-tangshan",
    "restaurant": "sens-restaurant-hexi",
    "residential": "sens-residential-xianlin",
}

#: the straight stretch of Nanjing's outline (shared with Zhenjiang) that the jitter scenario follows
BORDER_EDGE = ((32.05, 119.15), (32.20, 119.10))


def sc_boundary_jitter(ctx: Ctx, day: date | None = None) -> Run:
    """Drives along the city border with GPS jitter up to 130 m outside: within the buffer, no alert."""
    d = day or DATES["workday"]
    tr = ctx.track(d)
    g = ctx.world.geo.graph
    (la, oa), (lb, ob) = BORDER_EDGE
    # outward unit normal of the edge in local metres (east/north)
    ex, ny = (ob - oa) * m_per_deg_lon(la), (lb - la) * M_PER_DEG_LAT
    length = math.hypot(ex, ny)
    out_e, out_n = ny / length, -ex / length
    if out_e < 0:
        out_e, out_n = -out_e, -out_n
    along = []
    steps = 50
    for k in range(steps + 1):
        f = 0.3 + 0.4 * k / steps
        lat, lon = la + (lb - la) * f, oa + (ob - oa) * f
        jitter = ctx.rng.uniform(-150.0, 120.0) if 0 < k < steps else -300.0
        along.append(offset(lat, lon, out_n * jitter, out_e * jitter))
    entry = g.nearest(along[0][0], along[0][1], ctx.vehicle.city)
    exit_ = g.nearest(along[-1][0], along[-1][1], ctx.vehicle.city)
    tr.park_until(at(d, 9, 30))
    tr.drive(ctx.route(tr, entry), 45.0)
    tr.park_until(tr.t + 900, spot_jitter_m=10.0)
    path = straight(g.nodes[entry], along[0]) + along[1:] + straight(along[-1], g.nodes[exit_])[1:]
    drive = tr.drive(path, 40.0, critical=True)
    tr.park_until(tr.t + 900, spot_jitter_m=10.0)
    ctx.go_home(tr)
    run = _finish(ctx, tr, d)
    run.no_alert = [
        ctx.expect_none("out_of_area", drive.start, drive.end, "GPS jitter within the 200 m buffer")
    ]
    return run


def sc_depot_night(ctx: Ctx, day: date | None = None) -> Run:
    """Parks away from the depot overnight (back next morning): depot_night at 02:00."""
    d = day or DATES["workday"]
    tr = ctx.track(d)
    tr.park_until(at(d, 16))
    tr.drive(ctx.route(tr, ctx.destination(tr, 4000.0, 10000.0)), 45.0)
    next_day = d + timedelta(days=1)
    tr.park_until(at(next_day, 8, 30), spot_jitter_m=20.0)
    ctx.go_home(tr)
    return _finish(ctx, tr, next_day, intended={"depot_night"})


def sc_overspeed(ctx: Ctx, day: date | None = None) -> Run:
    """About 3 minutes at ~135 km/h on a long stretch: one overspeed episode."""
    d = day or DATES["workday"]
    tr = ctx.track(d)
    tr.park_until(at(d, 9, 30))
    dest = ctx.destination(tr, 15000.0, 40000.0)

    def cruise(s: float) -> float:
        return 135.0 if 3000.0 < s < 10000.0 else 50.0

    tr.drive(ctx.route(tr, dest), cruise, critical=True)
    tr.park_until(tr.t + 1800, spot_jitter_m=20.0)
    ctx.go_home(tr, 50.0)
    return _finish(ctx, tr, d, intended={"overspeed"})


def sc_power_cut(ctx: Ctx, day: date | None = None) -> Run:
    """Main power cut for two minutes while driving (alarm bit 8, acc on): power_cut."""
    d = day or DATES["workday"]
    tr = ctx.track(d)
    tr.park_until(at(d, 10))
    drive = tr.drive(ctx.route(tr, ctx.destination(tr, 6000.0, 15000.0)), 45.0, critical=True)
    for s in tr.samples:
        if drive.start + 300 <= s.t <= drive.start + 420 and s.acc:
            s.alarm = ALARM_POWER_CUT
    tr.park_until(tr.t + 1800, spot_jitter_m=20.0)
    ctx.go_home(tr)
    return _finish(ctx, tr, d, intended={"power_cut"})


def _outage(ctx: Ctx, upload: bool, day: date | None) -> Run:
    d = day or DATES["workday"]
    tr = ctx.track(d)
    tr.park_until(at(d, 10))
    drive = tr.drive(ctx.route(tr, ctx.destination(tr, 8000.0, 16000.0)), 40.0)
    tr.park_until(tr.t + 3600, spot_jitter_m=20.0)
    ctx.go_home(tr)
    run = _finish(ctx, tr, d)
    lo, hi = drive.start + 240, drive.start + 240 + 1200
    gap = [s for s in run.samples if lo < s.t <= hi]
    after = next(s for s in run.samples if s.t > hi)
    if upload:
        for s in gap:
            s.emit = after.t - 1  # the whole backlog goes out on reconnect, before any newer fix
        run.no_alert = [ctx.expect_none("offline", lo, after.t, "offline 20 min, backlog uploaded late")]
    else:
        run.received = [s for s in run.samples if not lo < s.t <= hi]
        run.intended = {"offline"}
    return run


def sc_offline_late_upload(ctx: Ctx, day: date | None = None) -> Run:
    """Terminal offline 20 min while driving, then uploads its backlog: data complete, no offline alert."""
    return _outage(ctx, True, day)


def sc_offline(ctx: Ctx, day: date | None = None) -> Run:
    """Terminal silent 20 min while driving and never uploads the gap: offline."""
    return _outage(ctx, False, day)


ScenarioFn = Callable[[Ctx, date | None], Run]

SCENARIOS: dict[str, ScenarioFn] = {
    "workday": sc_workday,
    "weekend": sc_weekend,
    "holiday": sc_holiday,
    "night": sc_night,
    "makeup_saturday": sc_makeup_saturday,
    "makeup_sunday": sc_makeup_sunday,
    "out_of_area": sc_out_of_area,
    "order_off_hours": sc_order_off_hours,
    "order_out_of_area": sc_order_out_of_area,
    **{f"dwell_{cat}": _place_scenario(z, True) for cat, z in PLACE_FOR.items()},
    **{f"driveby_{cat}": _place_scenario(z, False) for cat, z in PLACE_FOR.items()},
    "boundary_jitter": sc_boundary_jitter,
    "depot_night": sc_depot_night,
    "overspeed": sc_overspeed,
    "offline_late_upload": sc_offline_late_upload,
    "offline": sc_offline,
    "power_cut": sc_power_cut,
}

#: scenarios that make sense on any working day, mixed into `simulate fleet`
FLEET_MIX: tuple[str, ...] = tuple(
    n
    for n in SCENARIOS
    if n
    not in {
        "workday",
        "weekend",
        "holiday",
        "makeup_saturday",
        "makeup_sunday",
        "order_off_hours",
        "depot_night",
    }
)


def run_scenario(
    name: str, world: World, vehicle: Vehicle, motion: MotionConfig, day: date | None = None
) -> Run:
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    rng = random.Random(f"scenario:{world.seed}:{name}:{vehicle.device_id}")
    ctx = Ctx(world, vehicle, rng, motion, name)
    return SCENARIOS[name](ctx, day)


# --------------------------------------------------------------------------------------------
# truth, derived from the fixes themselves (docs/world-format.md, alert semantics table)
# --------------------------------------------------------------------------------------------


def _line(run: Run, kind: str, start: int, end: int, note: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "vehicle_id": run.vehicle.vehicle_id,
        "start": iso(start),
        "end": iso(end),
        "scenario": run.scenario,
        "note": note,
        **extra,
    }


def derive_truth(run: Run, world: World) -> list[dict[str, Any]]:
    """Every violation the received fixes contain, per the semantics table, plus the must-not lines.

    Computed from the fixes (not from what the scenario meant), so a scenario can never
    forget that its trip also happened off-hours or left the region.
    """
    seen = sorted(run.received, key=lambda s: s.t)
    out: list[dict[str, Any]] = []
    out += _truth_off_hours(run, seen)
    out += _truth_out_of_area(run, seen, world)
    out += _truth_dwell(run, seen, world)
    out += _truth_depot(run, seen)
    out += _truth_runs(run, seen, "overspeed", lambda s: s.speed > OVERSPEED_KMH, OVERSPEED_MIN_S)
    out += _truth_runs(run, seen, "power_cut", lambda s: bool(s.alarm & ALARM_POWER_CUT) and s.acc, 0)
    for a, b in itertools.pairwise(seen):
        if b.t - a.t > OFFLINE_AFTER_S and a.acc:
            out.append(_line(run, "offline", a.t, b.t, f"no fix for {b.t - a.t} s with ignition on"))
    return out + run.no_alert


def _truth_off_hours(run: Run, seen: list[Sample]) -> list[dict[str, Any]]:
    out = []
    for d in run.drives:
        pts = [s for s in seen if d.start <= s.t <= d.end]
        secs, metres = 0, 0.0
        for a, b in itertools.pairwise(pts):
            if off_work(a.t):
                secs += b.t - a.t
                if a.placed and b.placed:
                    metres += haversine_m(a.lat, a.lon, b.lat, b.lon)
        if secs < OFF_HOURS_MIN_S and metres < OFF_HOURS_MIN_M:
            continue
        start, end = datetime.fromtimestamp(d.start, TZ), datetime.fromtimestamp(d.end, TZ)
        covering = [o for o in run.orders if o.covers(start, end)]
        if covering:
            out.append(
                _line(
                    run, "off_hours", d.start, d.end, f"covered by order {covering[0].order_id}", expect=False
                )
            )
        else:
            out.append(
                _line(run, "off_hours", d.start, d.end, f"{secs} s / {metres:.0f} m outside working time")
            )
    return out


@dataclass
class _Excursion:
    """An open out-of-area excursion, tracked like the detector tracks one."""

    beyond: list[Sample]  # fixes outside by more than the buffer: they qualify it and place it
    last_out: Sample  # last fix outside at all: the excursion's end
    inside_since: int | None = None  # first fix of the current run of inside fixes
    inside_fixes: int = 0


def _truth_out_of_area(run: Run, seen: list[Sample], world: World) -> list[dict[str, Any]]:
    """Excursions per the semantics table: one starts at the first fix beyond the buffer and ends
    only when a fix is inside by more than the buffer, or the vehicle has been inside for
    OUT_OF_AREA_MIN_S and OUT_OF_AREA_MIN_FIXES fixes, so jitter across the boundary within the
    buffer never splits one. Its end is the last fix outside before returning."""
    region = world.geo.city(run.vehicle.city).polygon
    out: list[dict[str, Any]] = []

    def close(x: _Excursion) -> None:
        span = x.beyond[-1].t - x.beyond[0].t
        if len(x.beyond) < OUT_OF_AREA_MIN_FIXES or span < OUT_OF_AREA_MIN_S:
            return
        start, end = x.beyond[0].t, x.last_out.t
        exempt = _area_order(run, x.beyond, start, end)
        if exempt:
            out.append(_line(run, "out_of_area", start, end, f"covered by order {exempt}", expect=False))
        else:
            note = f"{len(x.beyond)} fixes beyond the {REGION_BUFFER_M:.0f} m buffer"
            out.append(_line(run, "out_of_area", start, end, note))

    valid = [s for s in seen if s.placed]
    inside = shapely.contains_xy(region, [s.lon for s in valid], [s.lat for s in valid]) if valid else []
    x: _Excursion | None = None
    for s, is_in in zip(valid, inside, strict=True):
        d = 0.0 if is_in else distance_outside_m(region, s.lat, s.lon)
        if x is None:
            if d > REGION_BUFFER_M:
                x = _Excursion(beyond=[s], last_out=s)
            continue
        if d > 0.0:
            x.last_out, x.inside_since, x.inside_fixes = s, None, 0
            if d > REGION_BUFFER_M:
                x.beyond.append(s)
            continue
        if x.inside_since is None:
            x.inside_since = s.t
        x.inside_fixes += 1
        settled = s.t - x.inside_since >= OUT_OF_AREA_MIN_S and x.inside_fixes >= OUT_OF_AREA_MIN_FIXES
        if settled or _distance_inside_m(region, s.lat, s.lon) > REGION_BUFFER_M:
            close(x)
            x = None
    if x is not None:
        close(x)
    return out


def _distance_inside_m(region: Polygon, lat: float, lon: float) -> float:
    """Metres from a point inside the region to its boundary, in a tangent plane at the point."""
    kx, ky = m_per_deg_lon(lat), M_PER_DEG_LAT
    local = shapely.affinity.scale(region, xfact=kx, yfact=ky, origin=(lon, lat))
    return float(local.boundary.distance(Point(lon, lat)))


def _area_order(run: Run, pts: list[Sample], start_t: int, end_t: int) -> str | None:
    """An approved order overlapping [start_t, end_t] whose destination area holds every point."""
    from shapely.geometry import shape

    start = datetime.fromtimestamp(start_t, TZ)
    end = datetime.fromtimestamp(end_t, TZ)
    for o in run.orders:
        if o.destination_area and o.overlaps(start, end):
            area = shape(o.destination_area)
            if all(area.contains(Point(s.lon, s.lat)) for s in pts):
                return o.order_id
    return None


def _truth_dwell(run: Run, seen: list[Sample], world: World) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    shapes = [(p, p.shape()) for p in world.geo.places]
    visit: list[Sample] = []
    where = None

    def close() -> None:
        if where is not None and visit and visit[-1].t - visit[0].t >= DWELL_MIN_S:
            p, minutes = where, (visit[-1].t - visit[0].t) // 60
            note = f"{minutes} min at {p.name}"
            extra = {"zone_id": p.zone_id, "category": p.category}
            out.append(_line(run, "private_destination", visit[0].t, visit[-1].t, note, **extra))

    still = [s for s in seen if s.placed and (s.speed < STATIONARY_KMH or not s.acc)]
    zone_of: dict[int, Any] = {}
    if still:
        xs, ys = [s.lon for s in still], [s.lat for s in still]
        for p, shp in shapes:
            for s, hit in zip(still, shapely.contains_xy(shp, xs, ys), strict=True):
                if hit and id(s) not in zone_of:
                    zone_of[id(s)] = p
    for s in seen:
        if not s.placed:
            continue
        here = zone_of.get(id(s))
        if here is not where:
            close()
            visit, where = [], here
        if here is not None:
            visit.append(s)
    close()
    return out


def _truth_depot(run: Run, seen: list[Sample]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    u = run.vehicle.unit
    valid = [s for s in seen if s.placed]
    if not valid:
        return out
    day = datetime.fromtimestamp(valid[0].t, TZ).date()
    last_day = datetime.fromtimestamp(valid[-1].t, TZ).date()
    i = 0
    while day <= last_day:
        check = at(day, _D.depot_check_time.hour, _D.depot_check_time.minute)
        while i + 1 < len(valid) and valid[i + 1].t <= check:
            i += 1
        s = valid[i]
        if (
            valid[0].t <= check <= valid[-1].t
            and haversine_m(s.lat, s.lon, u.depot_lat, u.depot_lon) > DEPOT_RADIUS_M
        ):
            out.append(
                _line(
                    run,
                    "depot_night",
                    check,
                    check,
                    f"at 02:00 {haversine_m(s.lat, s.lon, u.depot_lat, u.depot_lon):.0f} m from the depot",
                )
            )
        day += timedelta(days=1)
    return out


def _truth_runs(
    run: Run, seen: list[Sample], kind: str, pred: Callable[[Sample], bool], min_s: float
) -> list[dict[str, Any]]:
    out = []
    cur: list[Sample] = []
    for s in [*seen, None]:
        if s is not None and pred(s):
            cur.append(s)
            continue
        if cur and cur[-1].t - cur[0].t >= min_s:
            top = max(c.speed for c in cur)
            out.append(_line(run, kind, cur[0].t, cur[-1].t, f"{len(cur)} fixes, max {top:.0f} km/h"))
        cur = []
    return out
