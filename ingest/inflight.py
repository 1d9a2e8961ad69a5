"""In-flight accounting: which received MQTT messages may be acknowledged, and in which order.

A message is acknowledged only when it and every message received before it on the same
connection are safely in Kafka (telemetry or dead-letter topic). Acknowledging in receive
order is what MQTT asks of a receiver (§4.6), and it means one slow record holds back
later acknowledgements, which is exactly the back-pressure we want: the broker stops
sending once ReceiveMaximum messages are unacknowledged.

Each connection is a *generation*. When the connection drops, the broker will redeliver
every unacknowledged message on the next one (persistent session), possibly reusing the
same packet ids, so completions from an older generation must never be acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ticket:
    """Handle for one received message: its connection generation and receive position."""

    generation: int
    position: int
    mid: int
    qos: int


class InFlightWindow:
    """Thread-safe ordered acknowledgement window (pure logic: the ack itself is a callback)."""

    def __init__(self) -> None:
        # Plain lock on the per-message paths (its C-level enter/exit is what the profile wanted);
        # the condition on top of it is only for `wait_empty`.
        self._lock = threading.Lock()
        self._emptied = threading.Condition(self._lock)
        self._generation = 0
        self._next_position = 0
        # position -> (ticket, done)
        self._pending: OrderedDict[int, list[object]] = OrderedDict()
        self.acked = 0
        self.abandoned = 0

    @property
    def generation(self) -> int:
        return self._generation

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, mid: int, qos: int) -> Ticket:
        """Record a message received on the current connection."""
        with self._lock:
            ticket = Ticket(self._generation, self._next_position, mid, qos)
            self._next_position += 1
            self._pending[ticket.position] = [ticket, False]
            return ticket

    def is_current(self, ticket: Ticket) -> bool:
        return ticket.generation == self._generation

    def complete(self, ticket: Ticket, ack: Callable[[int, int], object]) -> int:
        """Mark ``ticket`` done and acknowledge the done prefix in receive order; returns how many.

        ``ack(mid, qos)`` is called under the window's lock so a concurrent `new_generation`
        can never interleave: an ack is either sent on the connection it belongs to or not at all.
        """
        with self._lock:
            if ticket.generation != self._generation:
                return 0
            entry = self._pending.get(ticket.position)
            if entry is None:
                return 0
            entry[1] = True
            sent = 0
            while self._pending:
                position, (head, done) = next(iter(self._pending.items()))
                if not done:
                    break
                del self._pending[position]
                assert isinstance(head, Ticket)
                if head.qos > 0:
                    ack(head.mid, head.qos)
                sent += 1
            self.acked += sent
            if not self._pending:
                self._emptied.notify_all()
            return sent

    def new_generation(self) -> int:
        """The connection is gone: forget everything unacknowledged (the broker redelivers it)."""
        with self._lock:
            dropped = len(self._pending)
            self.abandoned += dropped
            self._pending.clear()
            self._generation += 1
            self._emptied.notify_all()
            return dropped

    def wait_empty(self, timeout_s: float) -> bool:
        """Block until nothing is in flight (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._emptied.wait(left)
            return True
