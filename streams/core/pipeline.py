"""The per-vehicle pipeline: the declared stage order, `process` (one fix) and `flush`.

    dedup -> reorder -> enrich -> detect -> exempt

* dedup: a fix whose (device_id, seq) was already seen with the same ts is dropped (QoS 1
  redelivery); the same (device_id, seq) with another ts is a terminal that restarted its
  sequence numbers and is kept (counted in `seq_resets`).
* reorder: fixes are held until the vehicle's watermark (max ts seen - lateness_seconds) passes
  them, then released in (ts, device_id, seq) order, so results do not depend on arrival order
  within the lateness window.
* late policy: a fix older than the last released one is *re-evaluated*: the vehicle's detector
  state is restored from the latest checkpoint before the fix (checkpoints every
  `snapshot_every_seconds` of event time, kept for `late_horizon_seconds`), the retained fixes
  are replayed with the late one in place, and the difference is emitted: new or changed
  trips/alerts (same deterministic ids: an upsert) and RETRACT events for those that no longer
  hold. A fix older than the horizon is not applied; it is reported as a LATE_FIX event.
* enrich: which zones contain the fix, distance outside the permitted region.
* detect: the detectors in `detectors.DETECTORS` order.
* exempt: approved dispatch orders turn alert candidates into EXEMPTED events (DESIGN §3).

`process(state, fix, ctx) -> (state, events)`: the state object is updated in place and
returned; it is plain data (dataclasses, datetimes, `Fix`es) and pickles, so a stream worker
can store it in a table between fixes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from fleetwatch.records import AlertType, Fix, Trip
from streams.core.context import Context, VehicleContext
from streams.core.detectors import DETECTORS, Candidate, DetectorState, Output, close_all, remember
from streams.core.enrich import enrich
from streams.core.events import Event, EventKind, alert_event, trip_event

#: The stage order, declared once (names for docs, logs and the CLI summary).
STAGES: tuple[str, ...] = ("dedup", "reorder", "enrich", "detect", "exempt")

_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Snapshot:
    index: int  # absolute history index of the first fix processed after this checkpoint
    ts: datetime
    det: DetectorState


@dataclass
class VehicleState:
    vehicle_id: str
    seen: set[tuple[str, int, datetime]] = field(default_factory=set)
    seq_ts: dict[tuple[str, int], datetime] = field(default_factory=dict)
    max_ts: datetime | None = None
    buffer: list[tuple[datetime, str, int, Fix]] = field(default_factory=list)
    released_upto: datetime | None = None
    det: DetectorState = field(default_factory=DetectorState)
    history: list[Fix] = field(default_factory=list)
    hist_base: int = 0
    snapshots: list[Snapshot] = field(default_factory=list)
    emitted: list[tuple[int, Event]] = field(default_factory=list)
    duplicates: int = 0
    seq_resets: int = 0
    reevaluated: int = 0
    unapplied: int = 0
    released: int = 0


def new_state(vehicle_id: str) -> VehicleState:
    return VehicleState(vehicle_id)


def process(state: VehicleState | None, fix: Fix, ctx: Context) -> tuple[VehicleState, list[Event]]:
    """Feed one parsed fix (any arrival order) through the pipeline for its vehicle."""
    st = state if state is not None else new_state(fix.vehicle_id)
    vc = ctx.vehicle(fix.vehicle_id)
    # Fail before touching state: a date the calendar does not cover is an explicit error.
    vc.calendar.is_workday(fix.ts.astimezone(vc.tz).date())
    # -- dedup
    key = (fix.device_id, fix.seq, fix.ts)
    if key in st.seen:
        st.duplicates += 1
        return st, []
    st.seen.add(key)
    last_ts = st.seq_ts.get(fix.dedup_key)
    if last_ts is not None and last_ts != fix.ts:
        # Same (device, seq), another time: the terminal restarted its sequence; this is not a
        # redelivery, and dropping it would lose real data.
        st.seq_resets += 1
    st.seq_ts[fix.dedup_key] = fix.ts
    # -- reorder (and the late policy)
    if st.released_upto is not None and fix.ts < st.released_upto:
        return st, _late(st, fix, vc, ctx)
    heapq.heappush(st.buffer, (fix.ts, fix.device_id, fix.seq, fix))
    if st.max_ts is None or fix.ts > st.max_ts:
        st.max_ts = fix.ts
    watermark = st.max_ts - timedelta(seconds=vc.settings.lateness_seconds)
    events = _release(st, vc, ctx, lambda ts: ts <= watermark)
    _prune(st, ctx)
    return st, events


def flush(state: VehicleState, ctx: Context, until: datetime | None = None) -> list[Event]:
    """Release held fixes up to `until` (event time); with `until=None` (end of input) release
    everything and close open trips, visits, excursions and episodes as of the last fix."""
    vc = ctx.vehicle(state.vehicle_id)
    if until is not None:
        return _release(state, vc, ctx, lambda ts: ts <= until)
    events = _release(state, vc, ctx, lambda ts: True)
    out: Output = []
    close_all(state.det, vc, out)
    closing = exempt(state.det, out, vc)
    index = state.hist_base + len(state.history) - 1
    state.emitted.extend((index, e) for e in closing)
    return events + closing


# --------------------------------------------------------------------------------------------


def _release(
    st: VehicleState, vc: VehicleContext, ctx: Context, ready: Callable[[datetime], bool]
) -> list[Event]:
    events: list[Event] = []
    while st.buffer and ready(st.buffer[0][0]):
        fix = heapq.heappop(st.buffer)[3]
        events.extend(_apply(st, fix, vc, ctx))
    return events


def _apply(st: VehicleState, fix: Fix, vc: VehicleContext, ctx: Context) -> list[Event]:
    """enrich -> detect -> exempt for one released fix, recording what it produced."""
    if not st.snapshots:
        # The empty state before the first fix: a late fix older than everything replays from it.
        st.snapshots.append(Snapshot(st.hist_base, _BEGINNING, st.det.clone()))
    elif (fix.ts - st.snapshots[-1].ts).total_seconds() >= ctx.snapshot_every_seconds:
        index = st.hist_base + len(st.history)
        st.snapshots.append(Snapshot(index, fix.ts, st.det.clone()))
    st.history.append(fix)
    index = st.hist_base + len(st.history) - 1
    ef = enrich(fix, vc, st.det.last_valid)
    out: Output = []
    for _name, detector in DETECTORS:
        detector(st.det, ef, vc, out)
    remember(st.det, ef)
    events = exempt(st.det, out, vc)
    st.emitted.extend((index, e) for e in events)
    st.released_upto = fix.ts
    st.released += 1
    return events


def _late(st: VehicleState, fix: Fix, vc: VehicleContext, ctx: Context) -> list[Event]:
    snaps = [i for i, s in enumerate(st.snapshots) if s.ts <= fix.ts]
    if not snaps:
        st.unapplied += 1
        detail = {
            "device_id": fix.device_id,
            "seq": fix.seq,
            "ts": fix.ts.isoformat(),
            "released_upto": st.released_upto.isoformat() if st.released_upto else None,
            "reason": f"older than the re-evaluation horizon ({ctx.late_horizon_seconds:g} s)",
            "fix": fix.to_dict(),
        }
        return [Event(EventKind.LATE_FIX, f"{fix.device_id}:{fix.seq}", None, detail)]
    st.reevaluated += 1
    k = snaps[-1]
    snap = st.snapshots[k]
    start = snap.index - st.hist_base
    replay = sorted([*st.history[start:], fix], key=lambda f: (f.ts, f.device_id, f.seq))
    old = _final_by_key(e for i, e in st.emitted if i >= snap.index)
    st.history = st.history[:start]
    st.snapshots = st.snapshots[: k + 1]  # keep the checkpoint itself (its ts bounds later replays)
    st.emitted = [(i, e) for i, e in st.emitted if i < snap.index]
    st.det = snap.det.clone()
    new_events: list[Event] = []
    for f in replay:
        new_events.extend(_apply(st, f, vc, ctx))
    new = _final_by_key(new_events)
    diff = [e for key, e in new.items() if old.get(key) != e]
    for key, e in old.items():
        if key not in new and e.kind in (EventKind.ALERT, EventKind.TRIP):
            diff.append(Event(EventKind.RETRACT, key, None, {"what": e.kind.value, "reason": "late fix"}))
    return diff


def _final_by_key(events: Iterable[Event]) -> dict[str, Event]:
    final: dict[str, Event] = {}
    for e in events:
        final[e.key] = e
    return final


def _prune(st: VehicleState, ctx: Context) -> None:
    if st.released_upto is None:
        return
    horizon = st.released_upto - timedelta(seconds=ctx.late_horizon_seconds)
    dropped = 0
    while len(st.snapshots) >= 2 and st.snapshots[1].ts <= horizon:
        st.snapshots.pop(0)
        dropped += 1
    if dropped:
        keep_from = st.snapshots[0].index
        st.history = st.history[keep_from - st.hist_base :]
        st.hist_base = keep_from
        st.emitted = [(i, e) for i, e in st.emitted if i >= keep_from]
        oldest = st.snapshots[0].ts
        if len(st.seen) > 4 * max(1, len(st.history)):
            st.seen = {k for k in st.seen if k[2] >= oldest}
            st.seq_ts = {k: ts for k, ts in st.seq_ts.items() if ts >= oldest}


# --------------------------------------------------------------------------------------------
# exempt: approved dispatch orders (DESIGN §3)
# --------------------------------------------------------------------------------------------


def exempt(det: DetectorState, out: Output, vc: VehicleContext) -> list[Event]:
    """Turn detector output into events, applying order exemptions.

    off_hours: an approved order covering the whole trip. out_of_area / private_destination: an
    approved order overlapping the span whose destination area contains its positions (all the
    fixes beyond the buffer of an excursion; the place of a visit).
    depot_night (our extension): an approved order spanning the check instant (away on duty).
    Open (unfinished) candidates that an order could still exempt are held back until final.
    """
    orders = vc.orders
    events: list[Event] = []
    for item in out:
        if isinstance(item, Event):
            trip = item.record
            if item.kind is EventKind.TRIP and isinstance(trip, Trip):
                cover = orders.covering(vc.vehicle_id, trip.start, trip.end)
                if cover is not None:
                    item = trip_event(replace(trip, order_id=cover.order_id))
            events.append(item)
            continue
        events.extend(_exempt_candidate(det, item, vc))
    return events


def _exempt_candidate(det: DetectorState, c: Candidate, vc: VehicleContext) -> list[Event]:
    a = c.alert
    orders = vc.orders
    end = a.end or a.raised_at
    order = None
    if a.type is AlertType.OFF_HOURS:
        order = orders.covering(vc.vehicle_id, a.start, end)
    elif a.type in (AlertType.OUT_OF_AREA, AlertType.PRIVATE_DESTINATION):
        order = orders.place_exemption(vc.vehicle_id, a.start, end, c.points)
        if order is None and not c.final and orders.overlapping(vc.vehicle_id, a.start, end):
            return []  # an order is running: decide when the episode is over
    elif a.type is AlertType.DEPOT_NIGHT:
        running = orders.overlapping(vc.vehicle_id, a.start, a.start)
        order = running[0] if running else None
    if order is not None:
        events: list[Event] = []
        if a.alert_id in det.open_alerts:
            det.open_alerts.discard(a.alert_id)
            events.append(Event(EventKind.RETRACT, a.alert_id, None, {"what": "alert", "reason": "exempted"}))
        if c.final:
            detail = {"order_id": order.order_id, "alert": a.to_dict()}
            events.append(Event(EventKind.EXEMPTED, "exempt:" + a.alert_id, None, detail))
        return events
    if c.final:
        det.open_alerts.discard(a.alert_id)
    else:
        det.open_alerts.add(a.alert_id)
    return [alert_event(a)]
