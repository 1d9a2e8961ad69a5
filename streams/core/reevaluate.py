"""Re-evaluate a vehicle's retained history after its inputs changed (a dispatch order arrived).

The late-fix policy of `pipeline` restores the detector state from the checkpoint before a late
fix and replays the retained fixes; an order that arrives after the alerts it covers needs the
same thing without a new fix: replay from the checkpoint before the order's start with the
order now in the book, and emit only the difference (an alert that the order exempts comes back
as a RETRACT with reason "exempted" plus its EXEMPTED audit event). An order older than the
retained history (`late_horizon_seconds`) can only affect what is still retained; the caller
reports the rest (`ReevaluationResult.beyond_horizon`).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.core.context import Context
from streams.core.events import Event, EventKind
from streams.core.packed import micros
from streams.core.pipeline import VehicleState, _apply, _final_by_key, _noting_lower_severity, _thaw
from streams.core.timers import close_provisionally


@dataclass
class ReevaluationResult:
    events: list[Event] = field(default_factory=list)
    replayed: int = 0
    beyond_horizon: bool = False


def reevaluate(state: VehicleState, ctx: Context, since: datetime, *, closed: bool) -> ReevaluationResult:
    """Replay the released fixes from the checkpoint at or before `since`; `closed` says the
    vehicle had been closed provisionally after an idle spell (so the replay does that again)."""
    result = ReevaluationResult()
    if not state.snapshots:
        return result
    vc = ctx.vehicle(state.vehicle_id)
    since_us = micros(since)
    candidates = [i for i, s in enumerate(state.snapshots) if s.ts_us <= since_us]
    result.beyond_horizon = not candidates
    k = candidates[-1] if candidates else 0
    snap = state.snapshots[k]
    replay = state.history.since(snap.index)
    old = _final_by_key(e for i, e in state.emitted if i >= snap.index)
    state.history.truncate(snap.index)
    state.snapshots = state.snapshots[: k + 1]
    state.emitted = [(i, e) for i, e in state.emitted if i < snap.index]
    state.core = _thaw(pickle.loads(snap.core))
    new_events: list[Event] = []
    for row in replay:
        new_events.extend(_apply(state, row, None, vc, ctx))
    if closed:
        new_events.extend(close_provisionally(state, ctx))
    result.replayed = len(replay)
    new = _final_by_key(new_events)
    diff = [_noting_lower_severity(e, old.get(key)) for key, e in new.items() if old.get(key) != e]
    for key, e in old.items():
        if key in new or e.kind not in (EventKind.ALERT, EventKind.TRIP):
            continue
        reason = "exempted" if ("exempt:" + key) in new else "reevaluated"
        detail: dict[str, Any] = {"what": e.kind.value, "reason": reason}
        exempted = new.get("exempt:" + key)
        if exempted is not None:
            detail["order_id"] = exempted.detail.get("order_id")
        diff.append(Event(EventKind.RETRACT, key, None, detail))
    result.events = diff
    return result
