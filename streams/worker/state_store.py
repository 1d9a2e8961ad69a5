"""What the worker stores per vehicle in its changelog-backed table, and how it is encoded.

`dump_slot` / `load_slot` are the one place a slot is turned into bytes; the core's part is its
compact persisted form (`pipeline.dump_state`, a few KB); the replay history stays in
memory, so a worker restored from the changelog reports (not re-evaluates) fixes older than its
restore point.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from fleetwatch.records import Fix
from streams.core.pipeline import VehicleState, dump_state, load_state, new_state
from streams.core.timers import TimerState

SLOT_FORMAT = 2  # 2: the core as `dump_state` bytes (1 pickled the whole VehicleState)


@dataclass
class VehicleSlot:
    """One vehicle's entry in the worker's state table."""

    vehicle_id: str
    partition: int
    core: VehicleState
    timers: TimerState = field(default_factory=TimerState)
    #: Per-vehicle change counter: every trip/alert change carries the next value.
    revision: int = 0
    #: Wall clock (epoch s) when the worker last received a fix for this vehicle.
    last_received: float = 0.0
    #: Whether the newest fix (by its time) arrived within the live lag of its own timestamp.
    live: bool = False
    #: Closed provisionally after an idle spell (re-evaluations close it again).
    closed: bool = False
    #: The newest fix received (the live map shows it, before the reorder window releases it).
    newest: Fix | None = None
    #: Dispatch orders for this vehicle as received (order_id -> JSON), restored into the book.
    orders: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def new(cls, vehicle_id: str, partition: int) -> VehicleSlot:
        return cls(vehicle_id, partition, new_state(vehicle_id))

    def next_revision(self) -> int:
        self.revision += 1
        return self.revision


def dump_slot(slot: VehicleSlot) -> bytes:
    fields: dict[str, Any] = {k: v for k, v in vars(slot).items() if k != "core"}
    return pickle.dumps((SLOT_FORMAT, dump_state(slot.core), fields), protocol=pickle.HIGHEST_PROTOCOL)


def load_slot(data: bytes) -> VehicleSlot:
    fmt, core, fields = pickle.loads(data)
    if fmt != SLOT_FORMAT:
        raise ValueError(f"state table entry has format {fmt}; this worker reads format {SLOT_FORMAT}")
    return VehicleSlot(core=load_state(core), **fields)
