"""How one simulated vehicle moves and reports: driving along roads, parking, GPS noise, encoding."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import orjson

from simulator._geography import M_PER_DEG_LAT, haversine_m, m_per_deg_lon, offset

TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

#: JT/T 808 alarm bit 8: main power supply cut.
ALARM_POWER_CUT = 1 << 8

ACCEL_MS2 = 1.2  # gentle acceleration/braking, m/s^2


@dataclass(frozen=True)
class MotionConfig:
    moving_interval_s: int = 10
    parked_interval_s: int = 300
    gps_noise_m: float = 3.0
    invalid_rate: float = 0.01
    # Position faults real traces show (phones, loggers); the truth ignores jumped positions,
    # so they change no violation: detection must cope.
    #: probability per (non-critical) drive of a signal loss whose first fix lands far off
    jump_rate: float = 0.0
    #: parked heartbeats wander up to this far from where the vehicle stands
    parked_drift_m: float = 0.0
    #: share of vehicles that report every 30 s while moving (loggers) instead of every interval
    slow_share: float = 0.0


#: A signal loss lasts at least this long (then the first fix after it may land far off) ...
SIGNAL_LOSS_S = 90
#: ... by this much: well beyond what the reported speeds explain, as in the real traces.
JUMP_M = (1000.0, 1500.0)
SLOW_INTERVAL_S = 30


@dataclass(slots=True)
class Sample:
    """One report as the terminal makes it (reported, i.e. noisy, position)."""

    t: int  # event time, unix seconds
    lat: float
    lon: float
    speed: float
    heading: int
    acc: bool
    odo: float  # metres
    sats: int
    valid: bool = True
    alarm: int = 0
    emit: int = -1  # when the terminal sends it (-1: immediately, i.e. == t)
    jump: bool = False  # a position fault: the reported position is far from the true one

    @property
    def placed(self) -> bool:
        """The reported position is where the vehicle is (valid and not a jump)."""
        return self.valid and not self.jump


@dataclass(frozen=True)
class Drive:
    """One trip as planned: ignition on .. arrival (event time)."""

    start: int
    end: int
    distance_m: float


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, TZ).isoformat()


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    dx = (lon2 - lon1) * m_per_deg_lon(lat1)
    dy = (lat2 - lat1) * M_PER_DEG_LAT
    if dx == 0 and dy == 0:
        return 0
    return int(math.degrees(math.atan2(dx, dy))) % 360


@dataclass
class Track:
    """Builds one vehicle's reports in event order: park, drive, park, ..."""

    rng: random.Random
    cfg: MotionConfig
    t: int
    lat: float
    lon: float
    samples: list[Sample] = field(default_factory=list)
    drives: list[Drive] = field(default_factory=list)
    odo: float = 0.0
    heading: int = 0
    _last_valid: tuple[float, float] | None = None
    #: per-report randomness (GPS noise, invalid fixes, position faults) apart from `rng`, which
    #: plans the day: a different report interval or fault rate changes no plan, so no truth
    noise: random.Random = field(init=False)

    def __post_init__(self) -> None:
        # seeded from rng's state without drawing from it; a str seed is hashed stably (sha512),
        # unlike hash() of the state tuple (its None hashes by address)
        self.noise = random.Random(repr(self.rng.getstate()[1][:24]))

    def _noisy(self, lat: float, lon: float) -> tuple[float, float]:
        s = self.cfg.gps_noise_m
        return offset(lat, lon, self.noise.gauss(0, s), self.noise.gauss(0, s))

    def _emit(self, lat: float, lon: float, speed: float, acc: bool, valid: bool = True) -> Sample:
        if valid:
            rlat, rlon = self._noisy(lat, lon)
            self._last_valid = (rlat, rlon)
            sats = self.noise.randint(7, 14)
        else:
            # terminals without a fix repeat their last good position and flag it
            rlat, rlon = self._last_valid or (lat, lon)
            sats = self.noise.randint(0, 3)
        s = Sample(
            self.t, round(rlat, 6), round(rlon, 6), round(speed, 1), self.heading, acc, self.odo, sats, valid
        )
        self.samples.append(s)
        return s

    def park_until(self, until: int, spot_jitter_m: float = 0.0) -> None:
        """Ignition off here, then heartbeats every parked interval until ``until`` (exclusive)."""
        if spot_jitter_m:
            self.lat, self.lon = offset(
                self.lat, self.lon, self.rng.uniform(-spot_jitter_m, spot_jitter_m),
                self.rng.uniform(-spot_jitter_m, spot_jitter_m),
            )  # fmt: skip
        if not self.samples or self.samples[-1].acc or self.samples[-1].t < self.t:
            self._emit(self.lat, self.lon, 0.0, acc=False)
        step = self.cfg.parked_interval_s
        drift = self.cfg.parked_drift_m
        north = east = 0.0
        while self.t + step < until:
            self.t += step
            if drift:
                # a random walk of the reported position, never further than `drift` from the spot
                north += self.noise.gauss(0, drift / 3)
                east += self.noise.gauss(0, drift / 3)
                scale = min(1.0, drift / max(math.hypot(north, east), 1e-9))
                north, east = north * scale, east * scale
            self._emit(*offset(self.lat, self.lon, north, east), 0.0, acc=False)
        self.t = max(self.t, until)

    def drive(
        self,
        path: list[tuple[float, float]],
        cruise_kmh: float | Callable[[float], float] = 45.0,
        *,
        critical: bool = False,
        end_at_node: bool = True,
    ) -> Drive:
        """Ignition on, drive along ``path`` (first point = here), stop at its end with acc on.

        ``cruise_kmh`` may be a function of metres travelled. ``critical`` drives never report
        an invalid fix (scenarios whose truth depends on every position use it).
        """
        pts = [(self.lat, self.lon), *path[1:]] if path else [(self.lat, self.lon)]
        seg: list[float] = [haversine_m(*pts[i], *pts[i + 1]) for i in range(len(pts) - 1)]
        total = sum(seg)
        start = self.t
        self._emit(self.lat, self.lon, 0.0, acc=True)  # ignition on
        dt = self.cfg.moving_interval_s
        travelled = 0.0
        v = 0.0  # m/s
        i, into = 0, 0.0  # segment index, metres into it
        cruise = cruise_kmh if callable(cruise_kmh) else (lambda _s, c=cruise_kmh: c)
        wobble = self.rng.uniform(0, 6.28)
        # a signal loss starting this far into the drive (None: none on this drive)
        loss_at = None
        if not critical and total > 3000 and self.noise.random() < self.cfg.jump_rate:
            loss_at = total * self.noise.uniform(0.2, 0.6)
        lost_until = None
        while travelled < total:
            target = cruise(travelled) / 3.6 * (1 + 0.04 * math.sin(wobble + travelled / 700.0))
            remaining = total - travelled
            brake = math.sqrt(2 * ACCEL_MS2 * remaining)
            new_v = min(target, v + ACCEL_MS2 * dt, brake) if target > v else max(target, v - ACCEL_MS2 * dt)
            new_v = min(new_v, brake)
            step = max((v + new_v) / 2 * dt, 1.0)
            if step >= remaining:
                # arrive: the last stretch takes what it takes at the current speed
                self.t += max(1, math.ceil(remaining / max((v + 1.0) / 2, 1.0)))
                travelled = total
                self.lat, self.lon = pts[-1]
                self.odo += remaining
                break
            v = new_v
            travelled += step
            self.odo += step
            into += step
            while i < len(seg) - 1 and into > seg[i]:
                into -= seg[i]
                i += 1
            f = min(into / seg[i], 1.0) if seg[i] > 0 else 1.0
            (la, lo), (lb, lob) = pts[i], pts[i + 1]
            lat, lon = la + (lb - la) * f, lo + (lob - lo) * f
            self.heading = _bearing(self.lat, self.lon, lat, lon)
            self.lat, self.lon = lat, lon
            self.t += dt
            valid = critical or self.noise.random() >= self.cfg.invalid_rate
            speed = v * 3.6 + self.noise.uniform(-0.5, 0.5)
            if loss_at is not None and travelled >= loss_at:
                loss_at, lost_until = None, self.t + SIGNAL_LOSS_S + self.noise.randint(0, 30)
            if lost_until is not None and self.t < lost_until:
                valid = False  # no satellites: the terminal repeats its last position, flagged
            elif lost_until is not None and valid:
                # the first fix after the loss lands far off (multipath, a stale cell fix)
                lost_until = None
                bearing = self.noise.uniform(0, 2 * math.pi)
                away = self.noise.uniform(*JUMP_M)
                jlat, jlon = offset(lat, lon, away * math.cos(bearing), away * math.sin(bearing))
                known = self._last_valid
                self._emit(jlat, jlon, speed, acc=True).jump = True
                self._last_valid = known
                continue
            self._emit(lat, lon, speed, acc=True, valid=valid)
        if total == 0:
            self.t += dt
        self._emit(self.lat, self.lon, 0.0, acc=True)  # arrival, still running
        drive = Drive(start, self.t, total)
        self.drives.append(drive)
        self.t += dt
        return drive


def for_vehicle(cfg: MotionConfig, device_id: str, seed: int) -> MotionConfig:
    """The vehicle's own config: a `slow_share` of vehicles report every 30 s while moving."""
    if cfg.slow_share and random.Random(f"slow:{seed}:{device_id}").random() < cfg.slow_share:
        return replace(cfg, moving_interval_s=SLOW_INTERVAL_S)
    return cfg


def encode(sample: Sample, seq: int, device_id: str, vehicle_id: str) -> bytes:
    """A telemetry fix v1 as the terminal would send it."""
    obj: dict[str, object] = {
        "v": 1,
        "device_id": device_id,
        "vehicle_id": vehicle_id,
        "ts": iso(sample.t),
        "lat": sample.lat,
        "lon": sample.lon,
        "speed_kmh": sample.speed if sample.speed > 0 else 0.0,
        "heading": sample.heading,
        "acc": sample.acc,
        "seq": seq,
        "odometer_km": round(sample.odo / 1000.0, 3),
        "alt_m": 12.0,
        "sats": sample.sats,
        "alarm": sample.alarm,
        "fix_valid": sample.valid,
    }
    # orjson's result keeps its (kilobytes-large) working buffer; a tight copy keeps a
    # million-fix dataset in hundreds of MB instead of several GB
    return memoryview(orjson.dumps(obj)).tobytes()
