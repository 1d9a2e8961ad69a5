"""Transport faults applied to one device's message stream: duplicates, reordering, late bursts, garbage."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

#: Faults never delay a fix by more than this, so they stay inside the detectors' reorder
#: window (`lateness_seconds`, 600 s): what they test is reordering, not data loss.
MAX_FAULT_DELAY_S = 540


@dataclass(frozen=True)
class FaultConfig:
    duplicates: float = 0.0  # probability that a message is sent twice (QoS 1 redelivery)
    reorder: float = 0.0  # probability that a message overtakes ... is overtaken by the next few
    late_bursts: float = 0.0  # expected held-back bursts per device per simulated day
    malformed: float = 0.0  # probability of an extra malformed message after a good one

    @property
    def any(self) -> bool:
        return any((self.duplicates, self.reorder, self.late_bursts, self.malformed))


@dataclass(slots=True)
class Message:
    """One MQTT payload as a terminal sends it; ``seq`` is -1 for malformed garbage."""

    emit: float  # seconds, event-time scale: when the terminal sends it
    t: int  # event time of the fix
    seq: int
    payload: bytes
    kind: str = "fix"  # fix | duplicate | malformed


MALFORMED_KINDS: tuple[str, ...] = (
    "truncated", "swapped", "missing_ts", "naive_ts",
    "negative_speed", "string_lat", "bad_version", "not_object",
)  # fmt: skip


def corrupt(payload: bytes, kind: str) -> bytes:
    """A copy of a good fix broken in one specific way (each is rejected by `parse_fix`)."""
    if kind == "truncated":
        return payload[: max(1, len(payload) // 2)]
    if kind == "not_object":
        return b"[" + payload + b"]"
    obj = orjson.loads(payload)
    if kind == "swapped":
        obj["lat"], obj["lon"] = obj["lon"], obj["lat"]
    elif kind == "missing_ts":
        del obj["ts"]
    elif kind == "naive_ts":
        obj["ts"] = obj["ts"][:19]
    elif kind == "negative_speed":
        obj["speed_kmh"] = -abs(obj["speed_kmh"]) - 5.0
    elif kind == "string_lat":
        obj["lat"] = str(obj["lat"])
    elif kind == "bad_version":
        obj["v"] = 99
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    return orjson.dumps(obj)


def apply_faults(
    messages: list[Message], cfg: FaultConfig, rng: random.Random, days: float = 1.0
) -> list[Message]:
    """Return the device's messages in the order it sends them, with the configured faults."""
    if not cfg.any:
        return messages
    out: list[Message] = []
    # late bursts: a stretch of up to 5 minutes is held back and sent 1-4 minutes after it ends
    bursts = int(cfg.late_bursts * days) + (1 if rng.random() < (cfg.late_bursts * days) % 1 else 0)
    held: dict[int, float] = {}
    for _ in range(bursts):
        if len(messages) < 3:
            break
        i = rng.randrange(len(messages) - 1)
        t0 = messages[i].t
        hold_s = rng.uniform(60.0, 300.0)
        release = t0 + hold_s + rng.uniform(60.0, MAX_FAULT_DELAY_S - 300.0)
        j = i
        while j < len(messages) and messages[j].t <= t0 + hold_s:
            held[j] = max(held.get(j, 0.0), release)
            j += 1
    for idx, m in enumerate(messages):
        # a backlog upload is already as late as it can be; delaying it further would push it
        # past the reorder window, so its faults keep it in place
        backlog = m.emit > m.t
        emit = max(m.emit, held.get(idx, m.emit))
        reordered = cfg.reorder and rng.random() < cfg.reorder
        if reordered and not backlog:
            # overtaken by the next one to three messages
            emit += rng.uniform(10.0, 30.0)
        out.append(Message(emit, m.t, m.seq, m.payload, m.kind))
        if cfg.duplicates and rng.random() < cfg.duplicates:
            again = 0.0 if backlog else rng.uniform(0.5, 20.0)
            out.append(Message(emit + again, m.t, m.seq, m.payload, "duplicate"))
        if cfg.malformed and rng.random() < cfg.malformed:
            kind = rng.choice(MALFORMED_KINDS)
            out.append(Message(emit + 0.25, m.t, -1, corrupt(m.payload, kind), "malformed"))
    # a burst sent at one instant goes oldest first; ties keep the terminal's order (stable)
    out.sort(key=lambda m: (m.emit, m.t))
    return out
