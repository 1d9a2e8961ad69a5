"""The per-vehicle pipeline: the declared stages, `process` (one fix), `flush`, and the state split.

    dedup -> reorder -> screen -> enrich -> detect -> exempt      (`STAGES`, run in that order)

* dedup: a fix whose (device_id, seq) was already seen with the same ts is dropped (QoS 1
  redelivery). The window is bounded: keys of the last `lateness_seconds` of event time (and of
  the last released fix, which a restored state cannot find in a history), then the replay
  history (binary search by ts). The same (device_id, seq) with another ts is a
  terminal that restarted its sequence numbers and is kept (counted in `seq_resets`).
* reorder: fixes are held until the vehicle's watermark (max ts seen - lateness_seconds) passes
  them, then released in (ts, device_id, seq) order, so results do not depend on arrival order
  within the lateness window.
* late policy: a fix older than the last released one is *re-evaluated*: the state is restored
  from the latest checkpoint before it (every `snapshot_every_seconds` of event time, kept for
  `late_horizon_seconds`), the retained fixes are replayed with the late one in place, and the
  difference is emitted: new or changed trips/alerts (same ids: an upsert) and RETRACT events
  for those that no longer hold. A fix older than the horizon (or than a state restored by
  `load_state`, which has no replay history) is not applied: it is reported as LATE_FIX.
* screen: implausible position jumps are flagged, not used for distance and zones (`screen`).
* enrich: which zones contain the fix, distance outside the permitted region.
* detect: `detectors.DETECTORS`, in that order (each with its own state, held by name).
* exempt: approved dispatch orders turn alert candidates into EXEMPTED events (`exempt`).

Alert lifecycle (the same `alert_id` throughout, `raised_at` = event time it first qualified,
never changed by an update, `due` = raised_at + 3 days): *open* (an ALERT event with `end` null,
emitted when it qualifies, again if its severity rises) -> *updated* (ALERT with `end` set once
the episode is over; late data may update it again) -> possibly *retracted* (RETRACT: late data
or an order withdrew it). Severity may rise on an update; an update that lowers it (only late
re-evaluation can) says so in the event's `detail["severity_lowered"]`.

State: `process(state, fix, ctx) -> (state, events)` updates `state` in place and returns it.
A `VehicleState` has two parts:

* persisted (`dump_state(state) -> bytes`, `load_state(bytes) -> VehicleState`): detector states
  by name, the screen, the previous fix, open alert ids, the dedup window and the reorder buffer
  (packed rows) and counters — what a stream worker writes to its changelog table per fix;
* replay history (memory only): packed rows of the last `late_horizon_seconds`, checkpoints
  (pickled) and what was emitted since. A restored state starts with none: a late fix older
  than the restore point is reported, not re-evaluated (the telemetry topic holds the fixes).
"""

from __future__ import annotations

import heapq
import pickle
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleetwatch.records import Alert, Fix
from streams.core.context import Context, VehicleContext
from streams.core.detector import Env, LastFix
from streams.core.detectors import DETECTORS
from streams.core.enrich import enrich
from streams.core.events import Event, EventKind
from streams.core.exempt import exempt
from streams.core.packed import ROW_SIZE, History, dedup_key, iso, micros, order_key, pack, row_ts, unpack
from streams.core.screen import Item, Screen, drain, feed

#: The stage order, declared once; `_apply` and `_run` below follow it.
STAGES: tuple[str, ...] = ("dedup", "reorder", "screen", "enrich", "detect", "exempt")

_BEGINNING = -(2**62)  # µs: before any fix
_STATE_FORMAT = 1


@dataclass
class Core:
    """What re-evaluation restores from a checkpoint: everything a released fix changes."""

    detectors: dict[str, Any] = field(default_factory=lambda: {d.name: d.new_state() for d in DETECTORS})
    prev: LastFix = field(default_factory=LastFix)
    screen: Screen = field(default_factory=Screen)
    #: alert ids emitted while open: a later exemption retracts them (the exempt stage's state)
    open_alerts: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Snapshot:
    index: int  # absolute history index of the first row released after this checkpoint
    ts_us: int
    core: bytes  # pickled `_freeze(core)`


@dataclass
class VehicleState:
    vehicle_id: str
    core: Core = field(default_factory=Core)
    #: device ids seen for this vehicle; rows and dedup keys refer to them by index
    devices: list[str] = field(default_factory=list)
    #: dedup window: dedup_key(device, seq) -> ts (µs) of recently accepted fixes
    seen: dict[int, int] = field(default_factory=dict)
    #: reorder heap: (ts µs, device_id, seq, packed row, the Fix while at hand: None once restored)
    buffer: list[tuple[int, str, int, bytes, Fix | None]] = field(default_factory=list)
    max_ts: int | None = None  # µs
    released_upto: int | None = None  # µs
    duplicates: int = 0
    seq_resets: int = 0
    reevaluated: int = 0
    unapplied: int = 0
    released: int = 0
    # -- replay history: memory only
    history: History = field(default_factory=History)
    snapshots: list[Snapshot] = field(default_factory=list)
    emitted: list[tuple[int, Event]] = field(default_factory=list)
    _seen_limit: int = 64

    @property
    def outliers(self) -> int:
        return self.core.screen.outliers

    def device(self, device_id: str) -> int:
        try:
            return self.devices.index(device_id)
        except ValueError:
            self.devices.append(device_id)
            return len(self.devices) - 1


def new_state(vehicle_id: str) -> VehicleState:
    return VehicleState(vehicle_id)


def _freeze(core: Core) -> tuple[Any, ...]:
    """Core as plain data, compact: detector states by name, leaving out those as new (most
    detectors of most vehicles, most of the time); registering a detector never invalidates
    stored states (`_thaw` starts it fresh)."""
    fresh = {d.name: d.new_state() for d in DETECTORS}
    states = {name: st for name, st in core.detectors.items() if st is not None and st != fresh.get(name)}
    sc, prev = core.screen, core.prev
    alerts = sorted(core.open_alerts)
    queue = [row for row, _ in sc.queue]
    return (states, prev.ts, prev.acc, prev.position, queue, sc.anchor, sc.outliers, alerts)


def _thaw(frozen: tuple[Any, ...]) -> Core:
    states, prev_ts, prev_acc, prev_position, queue, anchor, outliers, open_alerts = frozen
    detectors = {d.name: states[d.name] if d.name in states else d.new_state() for d in DETECTORS}
    prev = LastFix(prev_ts, prev_acc, prev_position)
    return Core(detectors, prev, Screen([(row, None) for row in queue], anchor, outliers), set(open_alerts))


def _checkpoint(core: Core) -> bytes:
    return pickle.dumps(_freeze(core), pickle.HIGHEST_PROTOCOL)


def dump_state(state: VehicleState) -> bytes:
    """The persisted part of a vehicle's state, compact (a few KB): store it per fix."""
    seen = array("q")
    for key, ts in state.seen.items():
        seen.extend((key, ts))
    buffered = b"".join(entry[3] for entry in sorted(state.buffer, key=lambda e: e[:3]))
    counters = (state.duplicates, state.seq_resets, state.reevaluated, state.unapplied, state.released)
    payload = (
        _STATE_FORMAT, state.vehicle_id, _freeze(state.core), state.devices, seen, buffered,
        state.max_ts, state.released_upto, counters,
    )  # fmt: skip
    return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def load_state(data: bytes) -> VehicleState:
    """A state from `dump_state`, without replay history (see the module docstring)."""
    fmt, vehicle_id, core, devices, seen, buffered, max_ts, released_upto, counters = pickle.loads(data)
    if fmt != _STATE_FORMAT:
        raise ValueError(f"vehicle state format {fmt!r} is not {_STATE_FORMAT}")
    st = VehicleState(vehicle_id, _thaw(core), devices, dict(zip(seen[::2], seen[1::2], strict=True)))
    rows = (buffered[i : i + ROW_SIZE] for i in range(0, len(buffered), ROW_SIZE))
    st.buffer = [(*order_key(row, devices), row, None) for row in rows]  # sorted: a valid heap
    st.max_ts, st.released_upto = max_ts, released_upto
    st.duplicates, st.seq_resets, st.reevaluated, st.unapplied, st.released = counters
    return st


def process(state: VehicleState | None, fix: Fix, ctx: Context) -> tuple[VehicleState, list[Event]]:
    """Feed one parsed fix (any arrival order) through the pipeline for its vehicle."""
    st = state if state is not None else new_state(fix.vehicle_id)
    vc = ctx.vehicle(fix.vehicle_id)
    # -- dedup
    device = st.device(fix.device_id)
    ts_us = micros(fix.ts)
    key = dedup_key(device, fix.seq)
    prior = st.seen.get(key)
    if prior == ts_us or _seen_before(st, device, fix, ts_us, prior):
        st.duplicates += 1
        return st, []
    if prior is not None:
        # Same (device, seq), another time: the terminal restarted its sequence; this is not a
        # redelivery, and dropping it would lose real data.
        st.seq_resets += 1
    st.seen[key] = ts_us
    row = pack(fix, device, ts_us)
    # -- reorder (and the late policy)
    if st.released_upto is not None and ts_us < st.released_upto:
        return st, _late(st, row, fix, vc, ctx)
    heapq.heappush(st.buffer, (ts_us, fix.device_id, fix.seq, row, fix))
    if st.max_ts is None or ts_us > st.max_ts:
        st.max_ts = ts_us
    events = _release(st, vc, ctx, st.max_ts - int(vc.settings.lateness_seconds * 1e6))
    _prune(st, vc, ctx)
    return st, events


def flush(state: VehicleState, ctx: Context, until: datetime | None = None) -> list[Event]:
    """Release held fixes up to `until` (event time; a fix the screen holds for want of a
    successor is released once `until` is `lateness_seconds` past it); with `until=None` (end of
    input) release everything and close open trips, visits, excursions and episodes."""
    st = state
    vc = ctx.vehicle(st.vehicle_id)
    if until is not None:
        limit = micros(until)
        events = _release(st, vc, ctx, limit)
        queue = st.core.screen.queue
        if queue and row_ts(queue[0][0]) <= limit - int(vc.settings.lateness_seconds * 1e6):
            events += _record(st, _run(st, drain(st.core.screen), vc))
        return events
    events = _release(st, vc, ctx, None)
    events += _record(st, _run(st, drain(st.core.screen), vc))
    core = st.core
    env = Env(vc, core.prev, [])
    for d in DETECTORS:
        core.detectors[d.name] = d.close(core.detectors[d.name], env)
    return events + _record(st, exempt(core.open_alerts, env.out, vc))


# --------------------------------------------------------------------------------------------


def _seen_before(st: VehicleState, device: int, fix: Fix, ts_us: int, prior: int | None) -> bool:
    """Beyond the window's latest ts for this key: held in the buffer, or released (history)."""
    if st.released_upto is not None and ts_us <= st.released_upto:
        return st.history.contains(device, fix.seq, ts_us)
    if prior is None:  # the window covers everything still buffered
        return False
    return any(b[0] == ts_us and b[1] == fix.device_id and b[2] == fix.seq for b in st.buffer)


def _record(st: VehicleState, events: list[Event]) -> list[Event]:
    """Note events produced outside `_apply` as belonging to the last released row."""
    index = st.history.end - 1
    st.emitted.extend((index, e) for e in events)
    return events


def _release(st: VehicleState, vc: VehicleContext, ctx: Context, limit: int | None) -> list[Event]:
    events: list[Event] = []
    while st.buffer and (limit is None or st.buffer[0][0] <= limit):
        _ts, _dev, _seq, row, fix = heapq.heappop(st.buffer)
        events.extend(_apply(st, row, fix, vc, ctx))
    return events


def _apply(st: VehicleState, row: bytes, fix: Fix | None, vc: VehicleContext, ctx: Context) -> list[Event]:
    """One row out of the reorder buffer: checkpoint if due, keep it for replay, run the rest."""
    ts_us = row_ts(row)
    if not st.snapshots:
        # The state before the first fix (or the restore point): late fixes replay from here.
        start = st.released_upto if st.released_upto is not None else _BEGINNING
        st.snapshots.append(Snapshot(st.history.end, start, _checkpoint(st.core)))
    elif ts_us - st.snapshots[-1].ts_us >= ctx.snapshot_every_seconds * 1e6:
        st.snapshots.append(Snapshot(st.history.end, ts_us, _checkpoint(st.core)))
    index = st.history.end
    st.history.append(row)
    events = _run(st, feed(st.core.screen, (row, fix)), vc)
    st.emitted.extend((index, e) for e in events)
    st.released_upto = ts_us
    st.released += 1
    return events


def _run(st: VehicleState, judged: list[tuple[Item, bool]], vc: VehicleContext) -> list[Event]:
    """enrich -> detect -> exempt for fixes the screen released (flag: position implausible)."""
    core = st.core
    events: list[Event] = []
    for (row, parsed), outlier in judged:
        fix = parsed if parsed is not None else unpack(row, st.vehicle_id, st.devices)
        ef = enrich(fix, vc, core.prev.position, trusted=not outlier)
        env = Env(vc, core.prev, [])
        states = core.detectors
        for d in DETECTORS:
            states[d.name] = d.step(states[d.name], ef, env)
        core.prev = LastFix(fix.ts, fix.acc, (ef.lat, ef.lon) if ef.valid else core.prev.position)
        events.extend(exempt(core.open_alerts, env.out, vc))
    return events


def _late(st: VehicleState, row: bytes, fix: Fix, vc: VehicleContext, ctx: Context) -> list[Event]:
    ts_us = row_ts(row)
    snaps = [i for i, s in enumerate(st.snapshots) if s.ts_us <= ts_us]
    if not snaps:
        st.unapplied += 1
        detail = {
            "device_id": fix.device_id,
            "seq": fix.seq,
            "ts": fix.ts.isoformat(),
            "released_upto": iso(st.released_upto) if st.released_upto is not None else None,
            "reason": f"older than the re-evaluation horizon ({ctx.late_horizon_seconds:g} s)"
            if st.snapshots
            else "older than the state's restore point (no replay history)",
            "fix": fix.to_dict(),
        }
        return [Event(EventKind.LATE_FIX, f"{fix.device_id}:{fix.seq}", None, detail)]
    st.reevaluated += 1
    k = snaps[-1]
    snap = st.snapshots[k]
    replay = sorted([*st.history.since(snap.index), row], key=lambda r: order_key(r, st.devices))
    old = _final_by_key(e for i, e in st.emitted if i >= snap.index)
    st.history.truncate(snap.index)
    st.snapshots = st.snapshots[: k + 1]  # keep the checkpoint itself (its ts bounds later replays)
    st.emitted = [(i, e) for i, e in st.emitted if i < snap.index]
    st.core = _thaw(pickle.loads(snap.core))
    new_events: list[Event] = []
    for r in replay:
        new_events.extend(_apply(st, r, fix if r == row else None, vc, ctx))
    new = _final_by_key(new_events)
    diff = [_noting_lower_severity(e, old.get(key)) for key, e in new.items() if old.get(key) != e]
    for key, e in old.items():
        if key not in new and e.kind in (EventKind.ALERT, EventKind.TRIP):
            diff.append(Event(EventKind.RETRACT, key, None, {"what": e.kind.value, "reason": "late fix"}))
    return diff


def _noting_lower_severity(new: Event, old: Event | None) -> Event:
    was = old.record.severity if old is not None and isinstance(old.record, Alert) else None
    now = new.record.severity if isinstance(new.record, Alert) else None
    if was is None or now is None or now.rank >= was.rank:
        return new
    lowered = {"from": was.value, "to": now.value, "reason": "late fix re-evaluation"}
    return Event(new.kind, new.key, new.record, {**new.detail, "severity_lowered": lowered})


def _final_by_key(events: Iterable[Event]) -> dict[str, Event]:
    final: dict[str, Event] = {}
    for e in events:
        final[e.key] = e
    return final


def _prune(st: VehicleState, vc: VehicleContext, ctx: Context) -> None:
    if st.released_upto is None or st.max_ts is None:
        return
    horizon = st.released_upto - int(ctx.late_horizon_seconds * 1e6)
    dropped = 0
    while len(st.snapshots) >= 2 and st.snapshots[1].ts_us <= horizon:
        st.snapshots.pop(0)
        dropped += 1
    if dropped:
        keep_from = st.snapshots[0].index
        st.history.drop_before(keep_from)
        st.emitted = [(i, e) for i, e in st.emitted if i >= keep_from]
    # The window keeps the last lateness_seconds of event time, and never drops the keys at
    # `released_upto`: a state restored from its persisted form has no replay history, and a
    # redelivered copy of its last released fix is neither late (not older than it) nor found
    # in the history, so only the window tells it is a duplicate (a worker restarted after
    # kill -9 applied it twice). Older keys are found in the replay history. Keys arrive nearly
    # in ts order: drop from the front, filter all rarely.
    floor = min(st.max_ts - int(vc.settings.lateness_seconds * 1e6), st.released_upto)
    seen = st.seen
    while seen:
        oldest = next(iter(seen))
        if seen[oldest] >= floor:
            break
        del seen[oldest]
    if len(seen) > st._seen_limit:
        st.seen = {k: ts for k, ts in seen.items() if ts >= floor}
        st._seen_limit = max(64, 2 * len(st.seen))
