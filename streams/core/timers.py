"""Wall-clock checks for a live vehicle: `tick(state, timers, ctx, now)`, pure and clock-free.

The event-time core decides `offline` and `depot_night` only when the next fix arrives. A live
worker must not wait for that: a terminal that stays silent with the ignition on is raised as an
open `offline` alert once `offline_after_seconds` have passed on the wall clock, and a vehicle
that sends nothing overnight gets its `depot_night` alert at the check time. Both carry the ids
the core will give the same episode (same type, vehicle and start), so when fixes do arrive the
core's verdict replaces the timer's (`reconcile`): the same id again (confirmed), an exemption
(retracted, reason exempted) or nothing (retracted, reason not_confirmed: e.g. a terminal that
buffered its fixes and uploads them late fills the gap, which is not an offline episode).

`close_provisionally` is the idle close: what the end of input would emit, for a vehicle that has
gone quiet, without ending its episodes.

The caller decides *whether* a vehicle is live (see `streams.worker`); `now` is passed in, so the
tests drive the clock by hand.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fleetwatch.records import Alert, AlertType, Fix, Severity
from streams.core.context import Context
from streams.core.detector import LastFix, severity_of
from streams.core.events import Event, EventKind, alert_event
from streams.core.packed import unpack
from streams.core.pipeline import VehicleState, flush, process


@dataclass
class TimerState:
    """Alerts raised on the wall clock that the event-time core has not ruled on yet."""

    #: alert_id -> (the alert as raised, event time from which the core has decided it)
    raised: dict[str, tuple[Alert, datetime]] = field(default_factory=dict)


def tick(state: VehicleState, timers: TimerState, ctx: Context, now: datetime) -> list[Event]:
    """Release fixes up to `now - lateness`, then raise what the silence itself proves."""
    vc = ctx.vehicle(state.vehicle_id)
    events = flush(state, ctx, until=now - timedelta(seconds=vc.settings.lateness_seconds))
    events += reconcile(state, timers, events)
    if state.buffer:
        return events  # fixes still held back: the event-time core decides first
    last = _newest(state)
    if last.ts is None:
        return events
    s = vc.settings
    # offline while silent: ignition was on at the last fix, nothing since.
    silent_s = (now - last.ts).total_seconds()
    if last.acc and silent_s > s.offline_after_seconds:
        lat, lon = last.position or (0.0, 0.0)
        qualified = last.ts + timedelta(seconds=s.offline_after_seconds)
        alert = Alert.new(
            AlertType.OFFLINE, vc.vehicle_id, vc.org, last.ts, None, lat, lon, qualified,
            {"gap_seconds": None, "silent_seconds": round(silent_s), "raised_by": "wall_clock"},
            severity=severity_of(AlertType.OFFLINE, silent_s, vc),
        )  # fmt: skip
        events += _raise(timers, alert, last.ts + timedelta(microseconds=1))
    # depot_night at the check time, for a vehicle that has sent nothing since before it.
    if vc.depot is not None and last.position is not None:
        local_now = now.astimezone(vc.tz)
        check = datetime.combine(local_now.date(), s.depot_check_time, vc.tz)
        if check > local_now:
            check -= timedelta(days=1)
        if last.ts < check and not vc.orders.overlapping(vc.vehicle_id, check, check):
            lat, lon = last.position
            if not vc.depot.contains(lat, lon):
                details = {"depot": vc.depot.id, "distance_m": round(vc.depot.distance_m(lat, lon))}
                alert = Alert.new(
                    AlertType.DEPOT_NIGHT, vc.vehicle_id, vc.org, check, check, lat, lon, check, details,
                    severity=Severity.YELLOW,
                )
                events += _raise(timers, alert, check)
    return events


def _newest(state: VehicleState) -> LastFix:
    """The newest released fix: the screen holds the last one until a successor judges it, but
    its time and ignition are facts already (only its position awaits judgement)."""
    prev = state.core.prev
    queue = state.core.screen.queue
    if not queue:
        return prev
    row, _ = queue[-1]
    fix = unpack(row, state.vehicle_id, state.devices)
    return LastFix(fix.ts, fix.acc, prev.position)


def close_provisionally(state: VehicleState, ctx: Context) -> list[Event]:
    """What `flush(state, ctx)` (end of input) would emit, without ending anything: computed on a
    copy, so a vehicle that reports again continues its trip, visit or episode, and the later
    records carry the same ids (upserts). The events are remembered in the state's emitted list,
    so a later re-evaluation retracts any that no longer hold."""
    events = flush(copy.deepcopy(state), ctx)
    index = state.history.end - 1
    state.emitted.extend((index, e) for e in events)
    return events


def process_with_timers(
    state: VehicleState | None, timers: TimerState, fix: Fix, ctx: Context
) -> tuple[VehicleState, list[Event]]:
    """`pipeline.process`, then the core's verdict on any timer alert it has now ruled on."""
    st, events = process(state, fix, ctx)
    return st, events + reconcile(st, timers, events)


def _raise(timers: TimerState, alert: Alert, decided_from: datetime) -> list[Event]:
    if alert.alert_id in timers.raised:
        return []
    timers.raised[alert.alert_id] = (alert, decided_from)
    return [alert_event(alert)]


def reconcile(state: VehicleState, timers: TimerState, events: list[Event]) -> list[Event]:
    """Once the core has seen fixes past a timer alert's decisive instant, its verdict stands:
    returns the retractions for timer alerts the core did not confirm."""
    last = state.core.prev.ts
    if not timers.raised or last is None:
        return []
    seen = {e.key: e for e in events}
    out: list[Event] = []
    for alert_id, (_alert, decided_from) in list(timers.raised.items()):
        if last < decided_from:
            continue
        del timers.raised[alert_id]
        if alert_id in seen:
            continue  # the core raised the same alert: confirmed (and now complete)
        exempted = seen.get("exempt:" + alert_id)
        if exempted is not None:
            detail = {"what": "alert", "reason": "exempted", "order_id": exempted.detail.get("order_id")}
        else:
            detail = {"what": "alert", "reason": "not_confirmed"}
        out.append(Event(EventKind.RETRACT, alert_id, None, detail))
    return out


def open_alert_ids(state: VehicleState, timers: TimerState) -> set[str]:
    return set(state.core.open_alerts) | set(timers.raised)
