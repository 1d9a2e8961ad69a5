"""Assembles runs into a dataset (messages in emission order, orders, truth) and writes world dirs."""

from __future__ import annotations

import gc
import heapq
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from fleetwatch.records import DispatchOrder
from simulator._faults import FaultConfig, Message, apply_faults
from simulator._motion import TZ, Drive, MotionConfig, Sample, Track, encode, epoch, for_vehicle
from simulator._scenarios import DATES, FLEET_MIX, SCENARIOS, Ctx, Run, derive_truth, is_workday, run_scenario
from simulator._world import Vehicle, World, build_world, write_world


@contextmanager
def _no_gc() -> Iterator[None]:
    """Generation allocates millions of small acyclic objects; cyclic GC passes only cost time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class Dataset:
    world: World
    runs: list[Run]
    #: per vehicle (index = vehicle.index), the messages in the order the terminal sends them
    streams: list[list[Message]]
    truth: list[dict[str, Any]] = field(default_factory=list)

    @property
    def orders(self) -> list[DispatchOrder]:
        return [o for r in self.runs for o in r.orders]

    def messages(self) -> Iterator[tuple[Vehicle, Message]]:
        """All devices' messages merged by send time (ties: vehicle order), deterministic."""
        vehicles = self.world.vehicles

        def keyed(i: int) -> Iterator[tuple[float, int, int, Message]]:
            for k, m in enumerate(self.streams[i]):
                yield (m.emit, i, k, m)

        for _emit, i, _k, m in heapq.merge(*(keyed(i) for i in range(len(self.streams)))):
            yield vehicles[i], m

    def count(self, kind: str | None = None) -> int:
        return sum(1 for s in self.streams for m in s if kind is None or m.kind == kind)


def _stream(run: Run, faults: FaultConfig, seed: int, seq_base: int, days: float) -> list[Message]:
    v = run.vehicle
    seq_of = {id(s): seq_base + k for k, s in enumerate(run.samples)}
    msgs = [
        Message(
            float(s.emit if s.emit >= 0 else s.t),
            s.t,
            seq_of[id(s)],
            encode(s, seq_of[id(s)], v.device_id, v.vehicle_id),
        )
        for s in run.received
    ]
    msgs.sort(key=lambda m: (m.emit, m.t))
    return apply_faults(msgs, faults, random.Random(f"faults:{seed}:{v.device_id}"), days)


def _finish(
    world: World, runs: list[Run], faults: FaultConfig, seed: int, seq_base: int, days: float
) -> Dataset:
    with _no_gc():
        truth: list[dict[str, Any]] = []
        for r in runs:
            truth += derive_truth(r, world)
        streams = [_stream(r, faults, seed, seq_base, days) for r in runs]
        return Dataset(world, runs, streams, truth)


def build_scenarios(
    names: list[str],
    seed: int = 1,
    motion: MotionConfig | None = None,
    faults: FaultConfig | None = None,
    namespace: str = "",
    seq_base: int = 1,
) -> Dataset:
    """One Nanjing vehicle per scenario instance, so truths never interfere."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise KeyError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    motion = motion or MotionConfig()
    world = build_world(seed, nanjing=len(names), namespace=namespace)
    with _no_gc():
        runs = [
            run_scenario(n, world, v, for_vehicle(motion, v.device_id, seed))
            for n, v in zip(names, world.vehicles, strict=True)
        ]
    return _finish(world, runs, faults or FaultConfig(), seed, seq_base, 2.0)


def _parked_day(world: World, v: Vehicle, day: date, motion: MotionConfig, rng: random.Random) -> Run:
    u = v.unit
    tr = Track(rng, motion, epoch(datetime.combine(day, datetime.min.time(), TZ)), u.depot_lat, u.depot_lon)
    tr.park_until(tr.t, spot_jitter_m=40.0)
    tr.park_until(epoch(datetime.combine(day + timedelta(days=1), datetime.min.time(), TZ)) - 1)
    return Run("fleet_parked", v, tr.samples, tr.samples, tr.drives)


def build_fleet(
    vehicles: int,
    seed: int = 1,
    start: datetime | None = None,
    duration: timedelta = timedelta(days=1),
    mix: float = 0.05,
    motion: MotionConfig | None = None,
    faults: FaultConfig | None = None,
    namespace: str = "",
    seq_base: int = 1,
) -> Dataset:
    """N vehicles (3/4 Nanjing, 1/4 Zhenjiang) on ordinary days; a ``mix`` share of the Nanjing
    ones runs a violating (or tricky) scenario on the first working day instead.
    """
    motion = motion or MotionConfig()
    start = start or datetime.combine(DATES["workday"], datetime.min.time(), TZ)
    if start.tzinfo is None:
        raise ValueError("start must carry a UTC offset")
    end = start + duration
    nj = (vehicles * 3 + 3) // 4
    world = build_world(seed, nanjing=nj, zhenjiang=vehicles - nj, namespace=namespace)
    first_day = start.astimezone(TZ).date()
    last_day = (end - timedelta(seconds=1)).astimezone(TZ).date()
    days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    pick = random.Random(f"fleet-mix:{seed}")
    with _no_gc():
        runs = [
            _fleet_vehicle(
                world, v, days, pick, mix, for_vehicle(motion, v.device_id, seed), seed, start, end
            )
            for v in world.vehicles
        ]
    return _finish(
        world, runs, faults or FaultConfig(), seed, seq_base, max(1.0, duration / timedelta(days=1))
    )


def _fleet_vehicle(
    world: World,
    v: Vehicle,
    days: list[date],
    pick: random.Random,
    mix: float,
    motion: MotionConfig,
    seed: int,
    start: datetime,
    end: datetime,
) -> Run:
    scenario = pick.choice(FLEET_MIX) if v.city == "js.nj" and pick.random() < mix else None
    parts: list[Run] = []
    used = False
    for day in days:
        rng = random.Random(f"fleet:{seed}:{v.device_id}:{day}")
        if not is_workday(day):
            parts.append(_parked_day(world, v, day, motion, rng))
            continue
        name = scenario if scenario and not used else "workday"
        used = used or name == scenario
        parts.append(
            SCENARIOS[name](Ctx(world, v, rng, motion, name if name != "workday" else "fleet_workday"), day)
        )
    return _clip(_concat(parts), epoch(start), epoch(end))


def _concat(parts: list[Run]) -> Run:
    if len(parts) == 1:
        return parts[0]
    names = [p.scenario for p in parts if p.scenario not in ("fleet_workday", "fleet_parked")]
    run = Run(names[0] if names else parts[0].scenario, parts[0].vehicle, [], [], [])
    for p in parts:
        run.samples += p.samples
        run.received += p.received
        run.drives += p.drives
        run.orders += p.orders
        run.no_alert += p.no_alert
        run.intended |= p.intended
    return run


def _clip(run: Run, t0: int, t1: int) -> Run:
    def inside(s: Sample) -> bool:
        return t0 <= s.t < t1

    if all(inside(s) for s in run.samples):
        return run
    run.samples = [s for s in run.samples if inside(s)]
    run.received = [s for s in run.received if inside(s)]
    run.drives = [
        Drive(max(d.start, t0), min(d.end, t1 - 1), d.distance_m)
        for d in run.drives
        if d.end >= t0 and d.start < t1
    ]
    return run


# --------------------------------------------------------------------------------------------
# writing a world directory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteStats:
    fixes: int
    duplicates: int
    malformed: int
    orders: int
    truth: int
    vehicles: int


def write_dataset(ds: Dataset, out: Path) -> WriteStats:
    """The whole world directory (docs/world-format.md); byte-identical for the same inputs."""
    write_world(ds.world, out)
    with (out / "fixes.jsonl").open("wb") as fh:
        buf: list[bytes] = []
        for _v, m in ds.messages():
            buf.append(m.payload)
            if len(buf) >= 8192:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    orders = ds.orders
    (out / "orders.jsonl").write_bytes(b"".join(o.to_json() + b"\n" for o in orders))
    (out / "truth.jsonl").write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in ds.truth))
    return WriteStats(
        fixes=ds.count("fix"),
        duplicates=ds.count("duplicate"),
        malformed=ds.count("malformed"),
        orders=len(orders),
        truth=len(ds.truth),
        vehicles=len(ds.world.vehicles),
    )
