"""The detectors: pure functions of (detector state, enriched fix, vehicle context) -> candidates.

Each detector owns one small mutable sub-state and appends what it finds to `out`: closed trips
(`Event` of kind TRIP) and alert `Candidate`s, which the exemption stage turns into alerts.
An alert's span follows docs/world-format.md ("What each alert type means").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from fleetwatch.records import Alert, AlertType, Trip, trip_id_for
from geofence import haversine_m
from geofence.workcalendar import working_seconds
from streams.core.context import VehicleContext
from streams.core.enrich import Enriched
from streams.core.events import Event, trip_event

POWER_CUT_BIT = 1 << 8  # JT/T 808 alarm bit 8: main power cut
#: A gap without fixes this long ends a trip even if the vehicle is moving again afterwards.
TRIP_MAX_GAP_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert a detector found; `final` once its episode is over (else it is still open)."""

    alert: Alert
    final: bool
    #: Positions (lat, lon) that an order's destination area may contain to exempt it.
    points: tuple[tuple[float, float], ...] = ()


Output = list[Event | Candidate]


# --------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------


@dataclass
class TripState:
    start_ts: datetime | None = None  # None: no trip open
    start_lat: float = 0.0
    start_lon: float = 0.0
    last_ts: datetime | None = None
    last_lat: float = 0.0
    last_lon: float = 0.0
    distance_m: float = 0.0
    max_speed: float = 0.0
    fixes: int = 0
    outside_s: float = 0.0
    outside_m: float = 0.0
    # A stop in progress: the trip ends here if it lasts stop_seconds.
    stop_ts: datetime | None = None
    stop_lat: float = 0.0
    stop_lon: float = 0.0
    # Driving accumulated since the stop began; kept only if the trip resumes.
    p_distance_m: float = 0.0
    p_max_speed: float = 0.0
    p_fixes: int = 0
    p_outside_s: float = 0.0
    p_outside_m: float = 0.0


@dataclass
class ExcursionState:
    first_ts: datetime | None = None  # None: inside (or no excursion)
    last_out_ts: datetime | None = None
    last_lat: float = 0.0
    last_lon: float = 0.0
    beyond_fixes: int = 0
    last_beyond_ts: datetime | None = None
    inside_since: datetime | None = None
    inside_fixes: int = 0
    raised: bool = False
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class VisitState:
    zone_id: str | None = None
    category: str = ""
    zone_name: str = ""
    arrival: datetime | None = None
    last_ts: datetime | None = None
    lat: float = 0.0
    lon: float = 0.0
    raised: bool = False


@dataclass
class EpisodeState:
    """A run of consecutive fixes meeting a condition (overspeed, power cut)."""

    first_ts: datetime | None = None
    last_ts: datetime | None = None
    lat: float = 0.0
    lon: float = 0.0
    peak: float = 0.0
    fixes: int = 0
    raised: bool = False


@dataclass
class DetectorState:
    """All detectors' state for one vehicle (deep-copied for re-evaluation checkpoints)."""

    last_ts: datetime | None = None
    last_acc: bool = False
    last_valid: tuple[float, float] | None = None
    trip: TripState = field(default_factory=TripState)
    excursion: ExcursionState = field(default_factory=ExcursionState)
    visit: VisitState = field(default_factory=VisitState)
    overspeed: EpisodeState = field(default_factory=EpisodeState)
    power_cut: EpisodeState = field(default_factory=EpisodeState)
    #: alert ids emitted while still open, so a later exemption can retract them
    open_alerts: set[str] = field(default_factory=set)

    def clone(self) -> DetectorState:
        """An independent copy (checkpoints for re-evaluation); cheaper than deepcopy."""
        x = self.excursion
        return DetectorState(
            last_ts=self.last_ts,
            last_acc=self.last_acc,
            last_valid=self.last_valid,
            trip=replace(self.trip),
            excursion=replace(x, points=list(x.points)),
            visit=replace(self.visit),
            overspeed=replace(self.overspeed),
            power_cut=replace(self.power_cut),
            open_alerts=set(self.open_alerts),
        )


def _alert(
    vc: VehicleContext,
    kind: AlertType,
    start: datetime,
    end: datetime | None,
    lat: float,
    lon: float,
    raised_at: datetime,
    details: dict[str, Any],
    trip_id: str | None = None,
) -> Alert:
    return Alert.new(kind, vc.vehicle_id, vc.org, start, end, lat, lon, raised_at, details, trip_id)


def _secs(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


def _stationary(ef: Enriched, vc: VehicleContext) -> bool:
    return (not ef.fix.acc) or ef.fix.speed_kmh < vc.settings.stationary_speed_kmh


# --------------------------------------------------------------------------------------------
# trips (segmentation) and off-hours
# --------------------------------------------------------------------------------------------


def detect_trips(st: DetectorState, ef: Enriched, vc: VehicleContext, out: Output) -> None:
    """Trip segmentation: ignition + movement starts a trip; a stop >= stop_seconds ends it.

    A silence of stop_seconds after which the vehicle is found standing ends the trip at the
    last fix before the silence; a silence after which it is still moving is an outage and the
    trip goes on (the offline detector reports it), unless it lasts TRIP_MAX_GAP_SECONDS.
    """
    if not ef.valid:
        return
    t = st.trip
    fix = ef.fix
    s = vc.settings
    moving = not _stationary(ef, vc)
    if t.start_ts is not None and t.stop_ts is not None and _secs(t.stop_ts, fix.ts) >= s.stop_seconds:
        _close_trip(st, vc, out)
    elif t.start_ts is not None and t.last_ts is not None:
        gap = _secs(t.last_ts, fix.ts)
        # Silence, then found standing: it stopped at the last fix we have. Silence for very
        # long: whatever happened, it is not one trip any more.
        if (gap >= s.stop_seconds and not moving) or gap >= TRIP_MAX_GAP_SECONDS:
            _close_trip(st, vc, out)
    if t.start_ts is None:
        if moving:
            _start_trip(t, ef)
        return
    assert t.last_ts is not None
    seg_s = max(0.0, _secs(t.last_ts, fix.ts))
    seg_m = haversine_m(t.last_lat, t.last_lon, ef.lat, ef.lon)
    work_s = working_seconds(t.last_ts, fix.ts, vc.tz, vc.settings.office_hours, vc.calendar)
    out_s = max(0.0, seg_s - work_s)
    out_m = seg_m * (out_s / seg_s) if seg_s > 0 else 0.0
    if t.stop_ts is None:
        t.distance_m += seg_m
        t.outside_s += out_s
        t.outside_m += out_m
        t.fixes += 1
        t.max_speed = max(t.max_speed, fix.speed_kmh)
        if not moving:
            t.stop_ts, t.stop_lat, t.stop_lon = fix.ts, ef.lat, ef.lon
    else:
        t.p_distance_m += seg_m
        t.p_outside_s += out_s
        t.p_outside_m += out_m
        t.p_fixes += 1
        t.p_max_speed = max(t.p_max_speed, fix.speed_kmh)
        if moving:  # the stop was short: it belongs to the trip
            t.distance_m += t.p_distance_m
            t.outside_s += t.p_outside_s
            t.outside_m += t.p_outside_m
            t.fixes += t.p_fixes
            t.max_speed = max(t.max_speed, t.p_max_speed)
            _clear_stop(t)
    t.last_ts, t.last_lat, t.last_lon = fix.ts, ef.lat, ef.lon


def _start_trip(t: TripState, ef: Enriched) -> None:
    t.start_ts, t.start_lat, t.start_lon = ef.fix.ts, ef.lat, ef.lon
    t.last_ts, t.last_lat, t.last_lon = ef.fix.ts, ef.lat, ef.lon
    t.distance_m = t.outside_s = t.outside_m = 0.0
    t.max_speed = ef.fix.speed_kmh
    t.fixes = 1
    _clear_stop(t)


def _clear_stop(t: TripState) -> None:
    t.stop_ts = None
    t.p_distance_m = t.p_outside_s = t.p_outside_m = t.p_max_speed = 0.0
    t.p_fixes = 0


def _close_trip(st: DetectorState, vc: VehicleContext, out: Output) -> None:
    t = st.trip
    if t.start_ts is None or t.last_ts is None:
        return
    if t.stop_ts is not None:
        end, end_lat, end_lon = t.stop_ts, t.stop_lat, t.stop_lon
    else:
        end, end_lat, end_lon = t.last_ts, t.last_lat, t.last_lon
    start = t.start_ts
    duration = _secs(start, end)
    s = vc.settings
    keep = duration >= s.min_trip_seconds or t.distance_m >= s.min_trip_meters
    if keep:
        trip = Trip(
            trip_id=trip_id_for(vc.vehicle_id, start),
            vehicle_id=vc.vehicle_id,
            org=vc.org,
            start=start,
            end=end,
            start_lat=t.start_lat,
            start_lon=t.start_lon,
            end_lat=end_lat,
            end_lon=end_lon,
            distance_m=round(t.distance_m, 1),
            max_speed_kmh=t.max_speed,
            fix_count=t.fixes,
        )
        out.append(trip_event(trip))
        detect_off_hours(trip, t.outside_s, t.outside_m, vc, out)
    st.trip = TripState()


def detect_off_hours(trip: Trip, outside_s: float, outside_m: float, vc: VehicleContext, out: Output) -> None:
    """A closed trip with enough driving outside working time (orders are checked later)."""
    s = vc.settings
    if outside_s >= s.off_hours_min_seconds or outside_m >= s.off_hours_min_meters:
        details = {
            "outside_seconds": round(outside_s),
            "outside_meters": round(outside_m),
            "distance_m": trip.distance_m,
        }
        alert = _alert(
            vc,
            AlertType.OFF_HOURS,
            trip.start,
            trip.end,
            trip.start_lat,
            trip.start_lon,
            trip.end,
            details,
            trip.trip_id,
        )
        out.append(Candidate(alert, final=True))


# --------------------------------------------------------------------------------------------
# out of area (hysteresis)
# --------------------------------------------------------------------------------------------


def detect_out_of_area(st: DetectorState, ef: Enriched, vc: VehicleContext, out: Output) -> None:
    """Outside the permitted region beyond the buffer starts an excursion; it ends only when the
    vehicle is back inside by more than the buffer, or inside for out_of_area_min_seconds and
    out_of_area_min_fixes: GPS jitter within the buffer neither starts nor ends one."""
    if not ef.valid or ef.region_out_m is None or vc.region is None:
        return
    s = vc.settings
    x = st.excursion
    ts = ef.fix.ts
    dist = ef.region_out_m
    if x.first_ts is None:
        if dist > s.region_buffer_m:
            st.excursion = ExcursionState(
                first_ts=ts,
                last_out_ts=ts,
                last_lat=ef.lat,
                last_lon=ef.lon,
                beyond_fixes=1,
                last_beyond_ts=ts,
                points=[(ef.lat, ef.lon)],
            )
        return
    if dist > 0:
        x.last_out_ts, x.last_lat, x.last_lon = ts, ef.lat, ef.lon
        x.inside_since = None
        x.inside_fixes = 0
        if dist > s.region_buffer_m:
            x.beyond_fixes += 1
            x.last_beyond_ts = ts
            x.points.append((ef.lat, ef.lon))
        if _excursion_qualifies(x, vc) and not x.raised:
            x.raised = True
            out.append(Candidate(_excursion_alert(x, vc, None, ts), final=False, points=tuple(x.points)))
        return
    if x.inside_since is None:
        x.inside_since = ts
    x.inside_fixes += 1
    depth = vc.region.boundary_distance_m(ef.lat, ef.lon)
    back = depth > s.region_buffer_m or (
        _secs(x.inside_since, ts) >= s.out_of_area_min_seconds and x.inside_fixes >= s.out_of_area_min_fixes
    )
    if back:
        _end_excursion(st, vc, out, ts)


def _excursion_qualifies(x: ExcursionState, vc: VehicleContext) -> bool:
    s = vc.settings
    if x.first_ts is None or x.last_beyond_ts is None:
        return False
    return x.beyond_fixes >= s.out_of_area_min_fixes and _secs(x.first_ts, x.last_beyond_ts) >= (
        s.out_of_area_min_seconds
    )


def _excursion_alert(x: ExcursionState, vc: VehicleContext, end: datetime | None, raised: datetime) -> Alert:
    assert x.first_ts is not None
    first_lat, first_lon = x.points[0]
    details = {"region": vc.region.id if vc.region else None, "fixes_outside": x.beyond_fixes}
    return _alert(vc, AlertType.OUT_OF_AREA, x.first_ts, end, first_lat, first_lon, raised, details)


def _end_excursion(st: DetectorState, vc: VehicleContext, out: Output, now: datetime) -> None:
    x = st.excursion
    if x.first_ts is not None and x.last_out_ts is not None and _excursion_qualifies(x, vc):
        alert = _excursion_alert(x, vc, x.last_out_ts, now)
        out.append(Candidate(alert, final=True, points=tuple(x.points)))
    st.excursion = ExcursionState()


# --------------------------------------------------------------------------------------------
# private destination (dwell in a sensitive zone)
# --------------------------------------------------------------------------------------------


def detect_private_destination(st: DetectorState, ef: Enriched, vc: VehicleContext, out: Output) -> None:
    """Stationary inside a sensitive zone for dwell_min_seconds: one alert per visit."""
    if not ef.valid:
        return
    v = st.visit
    ts = ef.fix.ts
    stationary = _stationary(ef, vc)
    if v.zone_id is not None:
        still_there = any(z.id == v.zone_id for z in ef.sensitive)
        if still_there and stationary:
            v.last_ts = ts
            assert v.arrival is not None
            if not v.raised and _secs(v.arrival, ts) >= vc.settings.dwell_min_seconds:
                v.raised = True
                out.append(Candidate(_visit_alert(v, vc, None, ts), final=False, points=((v.lat, v.lon),)))
            return
        _end_visit(st, vc, out, ts)
    if stationary and ef.sensitive:
        zone = ef.sensitive[0]
        st.visit = VisitState(zone.id, zone.category or "", zone.name, ts, ts, ef.lat, ef.lon)


def _visit_alert(v: VisitState, vc: VehicleContext, departure: datetime | None, raised: datetime) -> Alert:
    assert v.arrival is not None
    details = {
        "zone_id": v.zone_id,
        "zone_name": v.zone_name,
        "category": v.category,
        "arrival": v.arrival.isoformat(),
        "departure": departure.isoformat() if departure else None,
        "dwell_seconds": round(_secs(v.arrival, departure or v.last_ts or v.arrival)),
    }
    end = departure or None
    return _alert(vc, AlertType.PRIVATE_DESTINATION, v.arrival, end, v.lat, v.lon, raised, details)


def _end_visit(st: DetectorState, vc: VehicleContext, out: Output, departure: datetime | None) -> None:
    v = st.visit
    if v.zone_id is not None and v.arrival is not None and v.last_ts is not None:
        # Dwell is what the fixes prove: arrival to the last stationary fix in the zone.
        until = departure or v.last_ts
        if _secs(v.arrival, v.last_ts) >= vc.settings.dwell_min_seconds:
            alert = _visit_alert(v, vc, until, until)
            out.append(Candidate(alert, final=True, points=((v.lat, v.lon),)))
    st.visit = VisitState()


# --------------------------------------------------------------------------------------------
# depot at night, overspeed, offline, power cut
# --------------------------------------------------------------------------------------------


def detect_depot_night(st: DetectorState, ef: Enriched, vc: VehicleContext, out: Output) -> None:
    """At each depot_check_time (local) between the previous fix and this one, the last known
    position must be inside the vehicle's depot."""
    if vc.depot is None or st.last_ts is None or st.last_valid is None:
        return
    prev_ts, ts = st.last_ts, ef.fix.ts
    tz = vc.tz
    day = prev_ts.astimezone(tz).date()
    while True:
        check = datetime.combine(day, vc.settings.depot_check_time, tz)
        if check > ts:
            break
        if check > prev_ts:
            lat, lon = (ef.lat, ef.lon) if (check == ts and ef.valid) else st.last_valid
            if not vc.depot.contains(lat, lon):
                details = {"depot": vc.depot.id, "distance_m": round(vc.depot.distance_m(lat, lon))}
                alert = _alert(vc, AlertType.DEPOT_NIGHT, check, check, lat, lon, check, details)
                out.append(Candidate(alert, final=True, points=((lat, lon),)))
        day += timedelta(days=1)


def detect_overspeed(st: DetectorState, ef: Enriched, vc: VehicleContext, out: Output) -> None:
    if not ef.valid:
        return
    s = vc.settings
    e = st.overspeed
    fix = ef.fix
    if fix.speed_kmh > s.overspeed_kmh:
        if e.first_ts is None:
            st.overspeed = EpisodeState(fix.ts, fix.ts, ef.lat, ef.lon, fix.speed_kmh, 1)
            return
        e.last_ts, e.peak, e.fixes = fix.ts, max(e.peak, fix.speed_kmh), e.fixes + 1
        assert e.first_ts is not None
        if not e.raised and _secs(e.first_ts, fix.ts) >= s.overspeed_min_seconds:
            e.raised = True
            out.append(Candidate(_overspeed_alert(e, vc, None, fix.ts), final=False))
        return
    _end_overspeed(st, vc, out)


def _overspeed_alert(e: EpisodeState, vc: VehicleContext, end: datetime | None, raised: datetime) -> Alert:
    assert e.first_ts is not None
    details = {"max_speed_kmh": e.peak, "limit_kmh": vc.settings.overspeed_kmh}
    return _alert(vc, AlertType.OVERSPEED, e.first_ts, end, e.lat, e.lon, raised, details)


def _end_overspeed(st: DetectorState, vc: VehicleContext, out: Output) -> None:
    e = st.overspeed
    long_enough = (
        e.first_ts is not None
        and e.last_ts is not None
        and (_secs(e.first_ts, e.last_ts) >= vc.settings.overspeed_min_seconds)
    )
    if long_enough and e.last_ts is not None:
        out.append(Candidate(_overspeed_alert(e, vc, e.last_ts, e.last_ts), final=True))
    st.overspeed = EpisodeState()


def detect_offline(st: DetectorState, ef: Enriched, vc: VehicleContext, out: Output) -> None:
    """An event-time gap longer than offline_after_seconds after a fix with ignition on."""
    if st.last_ts is None or not st.last_acc:
        return
    gap = _secs(st.last_ts, ef.fix.ts)
    if gap > vc.settings.offline_after_seconds:
        lat, lon = st.last_valid or (ef.lat, ef.lon)
        details = {"gap_seconds": round(gap)}
        alert = _alert(vc, AlertType.OFFLINE, st.last_ts, ef.fix.ts, lat, lon, ef.fix.ts, details)
        out.append(Candidate(alert, final=True))


def detect_power_cut(st: DetectorState, ef: Enriched, vc: VehicleContext, out: Output) -> None:
    fix = ef.fix
    e = st.power_cut
    cut = fix.acc and bool((fix.alarm or 0) & POWER_CUT_BIT)
    if cut:
        if e.first_ts is None:
            st.power_cut = EpisodeState(fix.ts, fix.ts, ef.lat, ef.lon, 0.0, 1)
            out.append(Candidate(_power_alert(st.power_cut, vc, None, fix.ts), final=False))
        else:
            e.last_ts, e.fixes = fix.ts, e.fixes + 1
        return
    _end_power_cut(st, vc, out)


def _power_alert(e: EpisodeState, vc: VehicleContext, end: datetime | None, raised: datetime) -> Alert:
    assert e.first_ts is not None
    return _alert(vc, AlertType.POWER_CUT, e.first_ts, end, e.lat, e.lon, raised, {"fixes": e.fixes})


def _end_power_cut(st: DetectorState, vc: VehicleContext, out: Output) -> None:
    e = st.power_cut
    if e.first_ts is not None and e.last_ts is not None:
        out.append(Candidate(_power_alert(e, vc, e.last_ts, e.last_ts), final=True))
    st.power_cut = EpisodeState()


# --------------------------------------------------------------------------------------------
# the declared detector order, and end of input
# --------------------------------------------------------------------------------------------

Detector = Callable[[DetectorState, Enriched, VehicleContext, Output], None]

#: Detectors in the order they run on every released fix. Those that compare with the previous
#: fix (depot_night, offline) read `last_ts` before `remember` updates it.
DETECTORS: tuple[tuple[str, Detector], ...] = (
    ("depot_night", detect_depot_night),
    ("offline", detect_offline),
    ("trips+off_hours", detect_trips),
    ("out_of_area", detect_out_of_area),
    ("private_destination", detect_private_destination),
    ("overspeed", detect_overspeed),
    ("power_cut", detect_power_cut),
)


def remember(st: DetectorState, ef: Enriched) -> None:
    st.last_ts = ef.fix.ts
    st.last_acc = ef.fix.acc
    if ef.valid:
        st.last_valid = (ef.lat, ef.lon)


def close_all(st: DetectorState, vc: VehicleContext, out: Output) -> None:
    """End of input: close every open episode as of the last fix seen."""
    _close_trip(st, vc, out)
    if st.excursion.first_ts is not None:
        _end_excursion(st, vc, out, st.last_ts or st.excursion.first_ts)
    if st.visit.zone_id is not None:
        _end_visit(st, vc, out, None)
    _end_overspeed(st, vc, out)
    _end_power_cut(st, vc, out)
