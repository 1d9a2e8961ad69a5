"""Re-evaluate a vehicle's retained history after its inputs changed (a dispatch order arrived).

The late-fix policy of `pipeline` restores the detector state from the checkpoint before a late
fix and replays the retained fixes (`pipeline.replay`); an order that arrives after the alerts it
covers needs the same replay without a new fix: from the checkpoint before the order's start
with the order now in the book, emitting only the difference (an alert that the order exempts comes back
as a RETRACT with reason "exempted" plus its EXEMPTED audit event). An order older than the
retained history (`late_horizon_seconds`) can only affect what is still retained; the caller
reports the rest (`ReevaluationResult.beyond_horizon`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from streams.core.context import Context
from streams.core.events import Event
from streams.core.packed import micros
from streams.core.pipeline import VehicleState, replay
from streams.core.timers import close_provisionally


@dataclass
class ReevaluationResult:
    events: list[Event] = field(default_factory=list)
    replayed: int = 0
    beyond_horizon: bool = False


def reevaluate(state: VehicleState, ctx: Context, since: datetime, *, closed: bool) -> ReevaluationResult:
    """Replay the released fixes from the checkpoint at or before `since` (`pipeline.replay`);
    `closed` says the vehicle had been closed provisionally after an idle spell (so the replay
    does that again)."""
    result = ReevaluationResult()
    if not state.snapshots:
        return result
    since_us = micros(since)
    candidates = [i for i, s in enumerate(state.snapshots) if s.ts_us <= since_us]
    result.beyond_horizon = not candidates
    then = (lambda st: close_provisionally(st, ctx)) if closed else None
    result.events, result.replayed = replay(
        state, candidates[-1] if candidates else 0, ctx, reason="reevaluated", then=then
    )
    return result
