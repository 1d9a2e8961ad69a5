"""Whether this worker still owns the partitions it was assigned: a lease on the group heartbeat.

A worker that stalls past its session timeout (a starved event loop, a stopped process, a lost
coordinator connection) is dropped from the consumer group, and its partitions go to another
worker, which restores their states from the changelog and goes on. The stalled worker learns it
only when its next heartbeat is answered; until then it still holds the records it fetched and the
states it changed. Written then, its stale states land in the compacted changelog after the new
owner's, and the next restore (any later rebalance) silently drops the fixes in between, while
the committed offsets are already past them (issue 10; tests/streams/worker/
test_rebalance_integration.py reproduces it with SIGSTOP / SIGCONT).

Kafka fences such a writer only with transactions, so the worker fences itself:

* OWNED: the consumer is still in the generation the partitions were assigned in, and a
  heartbeat sent less than half a session timeout ago was answered. The broker cannot drop the
  member before that heartbeat's send time plus the session timeout, so what is written now lands
  while the partitions are still this worker's.
* DOUBTFUL: same generation, no recent answered heartbeat: write nothing and wait until one is
  answered (OWNED again) or the consumer learns it was dropped.
* LOST: the consumer left that generation (dropped, or rejoining after a revocation): what the
  worker holds must be discarded, never written; the next owner reads those records again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("fleetwatch.worker")


class Standing(enum.Enum):
    OWNED = "owned"
    DOUBTFUL = "doubtful"
    LOST = "lost"


class Membership:
    """The lease, fed by the aiokafka group coordinator's heartbeats."""

    def __init__(self, session_timeout_s: float) -> None:
        self.session_timeout_s = session_timeout_s
        self.lease_s = session_timeout_s / 2
        self._coordinator: Any = None
        self._generation: int | None = None
        self._answered_sent_at = float("-inf")  # monotonic send time of the last answered heartbeat

    def assigned(self, coordinator: Any) -> None:
        """Partitions were just assigned: they belong to the coordinator's current generation.
        The lease runs from the last answered heartbeat, not from now: the process may have
        stalled since the group answered its join."""
        if coordinator is not self._coordinator:
            self._watch(coordinator)
        self._generation = coordinator.generation

    def _watch(self, coordinator: Any) -> None:
        # aiokafka has no heartbeat callback; its heartbeat loop looks `_do_heartbeat` up on each
        # beat, which returns True once the broker answered for this member and generation
        # (including "rebalancing": the member is still in the group until it rejoins). It runs in
        # faust's consumer thread: the lease is one float written there and read by the agent.
        self._coordinator = coordinator
        beat: Callable[[], Awaitable[bool]] = coordinator._do_heartbeat

        async def heartbeat() -> bool:
            sent = time.monotonic()
            answered = await beat()
            if answered:
                self._answered_sent_at = max(self._answered_sent_at, sent)
            return answered

        coordinator._do_heartbeat = heartbeat

    def standing(self) -> Standing:
        coordinator = self._coordinator
        if coordinator is None:
            return Standing.OWNED  # nothing assigned yet: nothing held that another worker has
        if coordinator.generation != self._generation:
            return Standing.LOST
        if time.monotonic() - self._answered_sent_at > self.lease_s:
            return Standing.DOUBTFUL
        return Standing.OWNED

    async def settled(self, poll_s: float = 0.1) -> Standing:
        """OWNED or LOST, waiting while DOUBTFUL (the heartbeat loop decides which)."""
        standing = self.standing()
        if standing is Standing.DOUBTFUL:
            quiet = time.monotonic() - self._answered_sent_at
            if quiet == float("inf"):  # at start: the first heartbeat comes one interval after the join
                report = log.info
                report("waiting for the first answered group heartbeat before writing")
            else:
                report = log.warning
                report("no heartbeat answered for %.1f s (lease %.1f s): holding writes until the group "
                       "confirms this worker or drops it", quiet, self.lease_s)  # fmt: skip
            started = time.monotonic()
            while standing is Standing.DOUBTFUL:
                await asyncio.sleep(poll_s)
                standing = self.standing()
            report("membership %s after %.1f s", standing.value, time.monotonic() - started)
        return standing


def group_coordinator(app: Any) -> Any:
    """The aiokafka group coordinator behind a faust app's consumer (faust's aiokafka driver
    reaches it the same way to read the generation)."""
    return app.consumer._thread._ensure_consumer()._coordinator
