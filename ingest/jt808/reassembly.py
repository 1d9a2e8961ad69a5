"""Sub-package reassembly: parts of one long message, keyed by message id, part count and first flow."""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.jt808.codec import Header

#: (message id, total parts, flow number of part 1): parts carry consecutive flow numbers.
PartsKey = tuple[int, int, int]


@dataclass(slots=True)
class _Parts:
    started: float
    bodies: dict[int, bytes] = field(default_factory=dict)
    raw: list[bytes] = field(default_factory=list)


class Reassembler:
    """Collects the parts of one connection's sub-packaged messages (pure; the clock is passed in).

    Incomplete messages older than ``timeout_s`` are handed back by `expire` so their raw
    parts can be dead-lettered instead of vanishing; ``max_open`` bounds the memory one
    terminal can hold.
    """

    def __init__(self, *, timeout_s: float = 60.0, max_open: int = 8) -> None:
        self.timeout_s = timeout_s
        self.max_open = max_open
        self._open: dict[PartsKey, _Parts] = {}

    @staticmethod
    def key(header: Header) -> PartsKey:
        first = (header.flow - (header.package_index - 1)) & 0xFFFF
        return (header.msg_id, header.package_total, first)

    def add(self, header: Header, body: bytes, raw: bytes, now: float) -> bytes | None:
        """Store one part; return the whole body once every part is in (parts may arrive in any order)."""
        key = self.key(header)
        parts = self._open.get(key)
        if parts is None:
            parts = self._open[key] = _Parts(now)
        parts.bodies[header.package_index] = body
        parts.raw.append(raw)
        if len(parts.bodies) < header.package_total:
            return None
        del self._open[key]
        return b"".join(parts.bodies[i] for i in range(1, header.package_total + 1))

    def expire(self, now: float) -> list[tuple[PartsKey, list[bytes]]]:
        """Drop incomplete messages past their time (or beyond ``max_open``); return their raw parts."""
        stale = [k for k, p in self._open.items() if now - p.started > self.timeout_s]
        by_age = sorted(self._open, key=lambda k: self._open[k].started)
        stale += [k for k in by_age[: max(0, len(self._open) - self.max_open)] if k not in stale]
        return [(k, self._open.pop(k).raw) for k in stale]

    def __len__(self) -> int:
        return len(self._open)
