"""A token bucket per channel: at most ``rate_per_minute`` messages a minute, a minute's worth of burst."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate_per_minute: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        self._tokens = self.capacity
        self._at = self.clock()

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate_per_minute)

    def try_take(self) -> bool:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate_per_minute / 60.0)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
