"""Trip segmentation: ignition + movement starts a trip; a stop, or a standstill silence, ends it.

Closed trips (after noise filtering) are emitted as TRIP events and posted, with their driving
inside and outside working time, for the detectors that judge trips (off_hours, no_order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from fleetwatch.records import Trip, trip_id_for
from geofence import CalendarError, haversine_m
from geofence.workcalendar import working_seconds
from streams.core.detector import Env, Exemption, secs, stationary
from streams.core.enrich import Enriched
from streams.core.events import Event, EventKind, trip_event

#: A gap without fixes this long ends a trip whatever the vehicle did in between.
TRIP_MAX_GAP_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class ClosedTrip:
    """What `trips` posts when a trip ends (and survives the noise filter)."""

    trip: Trip
    outside_s: float  # driving seconds outside working time
    outside_m: float  # metres driven outside working time
    working_s: float  # driving seconds inside working time
    #: a date the work calendar does not cover: whether the trip was off-hours is unknown
    undetermined: date | None


@dataclass(slots=True)
class Tally:
    distance_m: float = 0.0
    max_speed: float = 0.0
    fixes: int = 0
    outside_s: float = 0.0
    outside_m: float = 0.0
    working_s: float = 0.0

    def add(self, other: Tally) -> None:
        self.distance_m += other.distance_m
        self.max_speed = max(self.max_speed, other.max_speed)
        self.fixes += other.fixes
        self.outside_s += other.outside_s
        self.outside_m += other.outside_m
        self.working_s += other.working_s


@dataclass(slots=True)
class TripState:
    start_ts: datetime | None = None  # None: no trip open
    start_lat: float = 0.0
    start_lon: float = 0.0
    last_ts: datetime | None = None
    last_lat: float = 0.0
    last_lon: float = 0.0
    done: Tally = field(default_factory=Tally)
    # A stop in progress: the trip ends where it began if it lasts stop_seconds; what is
    # driven meanwhile (`pending`) joins the trip only if it resumes.
    stop_ts: datetime | None = None
    stop_lat: float = 0.0
    stop_lon: float = 0.0
    pending: Tally = field(default_factory=Tally)
    undetermined: date | None = None


class Trips:
    name = "trips"
    needs: tuple[str, ...] = ()
    alert_type = None
    exemption = Exemption.NONE

    def new_state(self) -> TripState:
        return TripState()

    def step(self, st: TripState, ef: Enriched, env: Env) -> TripState:
        if not ef.valid:
            return st
        s = env.vc.settings
        fix = ef.fix
        moving = not stationary(ef, env.vc)
        if st.start_ts is not None and st.last_ts is not None:
            gap = secs(st.last_ts, fix.ts)
            if st.stop_ts is not None and secs(st.stop_ts, fix.ts) >= s.stop_seconds:
                st = self._close(st, env)
            elif gap >= TRIP_MAX_GAP_SECONDS or (
                gap >= s.stop_seconds and (not moving or _stood_through(st, ef, gap, s.stationary_speed_kmh))
            ):
                # A silence the vehicle spent standing: it stopped at the last fix before it.
                st = self._close(st, env)
        if st.start_ts is None:
            # A moving fix that ends a stop (or a silence) starts the next trip right here.
            return _started(ef) if moving else st
        assert st.last_ts is not None
        seg = _segment(st, ef, env)
        if st.stop_ts is None:
            st.done.add(seg)
            if not moving:
                st.stop_ts, st.stop_lat, st.stop_lon = fix.ts, ef.lat, ef.lon
        else:
            st.pending.add(seg)
            if moving:  # the stop was short: it belongs to the trip
                st.done.add(st.pending)
                st.stop_ts, st.pending = None, Tally()
        st.last_ts, st.last_lat, st.last_lon = fix.ts, ef.lat, ef.lon
        return st

    def close(self, st: TripState, env: Env) -> TripState:
        return self._close(st, env)

    def _close(self, st: TripState, env: Env) -> TripState:
        if st.start_ts is None or st.last_ts is None:
            return TripState()
        vc = env.vc
        if st.stop_ts is not None:
            end, end_lat, end_lon = st.stop_ts, st.stop_lat, st.stop_lon
        else:
            end, end_lat, end_lon = st.last_ts, st.last_lat, st.last_lon
        start = st.start_ts
        t = st.done
        s = vc.settings
        if secs(start, end) >= s.min_trip_seconds or t.distance_m >= s.min_trip_meters:
            trip = Trip(
                trip_id=trip_id_for(vc.vehicle_id, start),
                vehicle_id=vc.vehicle_id,
                org=vc.org,
                start=start,
                end=end,
                start_lat=st.start_lat,
                start_lon=st.start_lon,
                end_lat=end_lat,
                end_lon=end_lon,
                distance_m=round(t.distance_m, 1),
                max_speed_kmh=t.max_speed,
                fix_count=t.fixes,
            )
            env.out.append(trip_event(trip))
            env.post(self.name, ClosedTrip(trip, t.outside_s, t.outside_m, t.working_s, st.undetermined))
        return TripState()


def _started(ef: Enriched) -> TripState:
    fix = ef.fix
    return TripState(
        start_ts=fix.ts,
        start_lat=ef.lat,
        start_lon=ef.lon,
        last_ts=fix.ts,
        last_lat=ef.lat,
        last_lon=ef.lon,
        done=Tally(max_speed=fix.speed_kmh, fixes=1),
    )


def _stood_through(st: TripState, ef: Enriched, gap: float, stationary_kmh: float) -> bool:
    """Judge a silence by displacement over time, not by the first fix after it: moving on
    average slower than walking pace means the vehicle stood (12 m in 22 min is a stop)."""
    moved_m = haversine_m(st.last_lat, st.last_lon, ef.lat, ef.lon)
    return moved_m / gap * 3.6 < stationary_kmh


def _segment(st: TripState, ef: Enriched, env: Env) -> Tally:
    """The stretch from the trip's last fix to this one, split by working time."""
    assert st.last_ts is not None
    vc = env.vc
    fix = ef.fix
    seg_s = max(0.0, secs(st.last_ts, fix.ts))
    seg_m = haversine_m(st.last_lat, st.last_lon, ef.lat, ef.lon)
    try:
        work_s = working_seconds(st.last_ts, fix.ts, vc.tz, vc.settings.office_hours, vc.calendar)
    except CalendarError as exc:
        # Unknown whether this was working time: off-hours for the vehicle-day is undetermined,
        # reported once per trip; trips and every other detector go on.
        work_s = seg_s
        if st.undetermined is None:
            day = _uncovered_day(st.last_ts, fix.ts, env)
            st.undetermined = day
            when = day.isoformat()
            detail = {"vehicle_id": vc.vehicle_id, "date": when, "year": day.year, "reason": str(exc)}
            key = f"calendar_missing:{vc.vehicle_id}:{when}"
            env.out.append(Event(EventKind.CALENDAR_MISSING, key, None, detail))
    out_s = max(0.0, seg_s - work_s)
    out_m = seg_m * (out_s / seg_s) if seg_s > 0 else 0.0
    return Tally(seg_m, fix.speed_kmh, 1, out_s, out_m, seg_s - out_s)


def _uncovered_day(a: datetime, b: datetime, env: Env) -> date:
    day = a.astimezone(env.vc.tz).date()
    last = b.astimezone(env.vc.tz).date()
    while day < last and env.vc.calendar.covers(day):
        day += timedelta(days=1)
    return day


class TripRule:
    """Base of detectors judging each trip `trips` closes (off_hours, no_order): stateless."""

    name = "trip_rule"
    needs = ("trips",)

    def new_state(self) -> None:
        return None

    def step(self, state: None, ef: Enriched, env: Env) -> None:
        self.judge(env.posted.get(Trips.name, []), env)

    def close(self, state: None, env: Env) -> None:
        self.judge(env.posted.get(Trips.name, []), env)

    def judge(self, closed: list[ClosedTrip], env: Env) -> None:
        raise NotImplementedError


DETECTOR = Trips()
