"""A field engineer's live view of one terminal: its fixes as they land in Kafka, or why not."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from kafka import TopicPartition
from rich.console import Group
from rich.table import Table
from rich.text import Text

from fleetwatch import topics
from fleetwatch.kafka_io import make_consumer
from fleetwatch.records import ContractError, DeadLetter, Fix, parse_dead_letter, parse_fix
from fleetwatch.settings import Settings

#: A silence between two consecutive fixes longer than this is shown as a gap.
GAP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to the watched terminal's messages."""

    landed_at: datetime  # Kafka record time (when the bridge produced it)
    fix: Fix | None = None
    letter: DeadLetter | None = None
    seq_gap: int = 0  # seqs missing just before this fix
    time_gap_s: float = 0.0  # silence before this fix, if over GAP_SECONDS
    repeated: bool = False  # seq not above the last one: a redelivery or a restarted counter

    @property
    def age_s(self) -> float | None:
        """Fix time to landing in Kafka: how late the terminal's report arrived."""
        return (self.landed_at - self.fix.ts).total_seconds() if self.fix else None


@dataclass
class Watch:
    """What `fleetwatch watch` knows about one device or vehicle (pure: fed records, no I/O)."""

    device_id: str | None = None
    vehicle_id: str | None = None
    keep: int = 20
    events: deque[Event] = field(default_factory=deque)
    fixes: int = 0
    dead_letters: int = 0
    missing_seqs: int = 0
    gaps: int = 0
    repeats: int = 0
    last_fix: Fix | None = None
    last_landed: datetime | None = None
    _landed: deque[datetime] = field(default_factory=deque)

    def matches_fix(self, fix: Fix) -> bool:
        return fix.device_id == self.device_id or fix.vehicle_id == self.vehicle_id

    def may_match(self, value: bytes) -> bool:
        """Cheap pre-filter of a telemetry record (the bridge writes canonical orjson, no spaces)."""
        if self.device_id is not None:
            return b'"device_id":' + orjson.dumps(self.device_id) in value
        return b'"vehicle_id":' + orjson.dumps(self.vehicle_id) in value

    def matches_letter(self, letter: DeadLetter) -> bool:
        device = letter.source_topic.rsplit("/", 1)[-1]
        if self.device_id is not None and device == self.device_id:
            return True
        if self.vehicle_id is None:
            return False
        if self.last_fix is not None and device == self.last_fix.device_id:
            return True  # the vehicle's terminal, learnt from its fixes
        try:
            claimed = orjson.loads(letter.payload)
        except orjson.JSONDecodeError:
            return False
        return isinstance(claimed, dict) and claimed.get("vehicle_id") == self.vehicle_id

    def add_fix(self, fix: Fix, landed_at: datetime) -> Event:
        seq_gap, time_gap, repeated = 0, 0.0, False
        last = self.last_fix
        if last is not None:
            if fix.seq <= last.seq:
                repeated = True
                self.repeats += 1
            else:
                seq_gap = fix.seq - last.seq - 1
                silence = (fix.ts - last.ts).total_seconds()
                time_gap = silence if silence > GAP_SECONDS else 0.0
        self.missing_seqs += seq_gap
        self.gaps += int(seq_gap > 0 or time_gap > 0)
        if not repeated:
            self.last_fix = fix
        self.fixes += 1
        self._landed.append(landed_at)
        event = Event(landed_at, fix=fix, seq_gap=seq_gap, time_gap_s=time_gap, repeated=repeated)
        return self._record(event)

    def add_letter(self, letter: DeadLetter, landed_at: datetime) -> Event:
        self.dead_letters += 1
        return self._record(Event(landed_at, letter=letter))

    def _record(self, event: Event) -> Event:
        self.events.append(event)
        while len(self.events) > self.keep:
            self.events.popleft()
        self.last_landed = max(self.last_landed or event.landed_at, event.landed_at)
        return event

    def rate_per_min(self, now: datetime) -> int:
        """Fixes that landed in the last minute."""
        while self._landed and now - self._landed[0] > timedelta(minutes=1):
            self._landed.popleft()
        return len(self._landed)


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(event: Event) -> tuple[str, str, str, str, Text]:
    """(landed, seq, position, age, note) of one event, as `render` and the line log show it."""
    landed = event.landed_at.astimezone().strftime("%H:%M:%S")
    if event.letter is not None:
        letter = event.letter
        note = Text(f"DEAD LETTER {letter.code}: {letter.message}", style="bold red")
        return landed, "", "", "", note
    fix = event.fix
    assert fix is not None and event.age_s is not None
    position = f"{fix.lat:.5f}, {fix.lon:.5f}  {fix.speed_kmh:.0f} km/h {'acc' if fix.acc else 'off'}"
    if fix.fix_valid is False:
        position += " (no GPS fix)"
    notes = []
    if event.seq_gap:
        notes.append(f"gap: {event.seq_gap} seq missing")
    if event.time_gap_s:
        notes.append(f"gap: silent {_ago(event.time_gap_s)}")
    if event.repeated:
        notes.append("repeat (seq not increasing)")
    style = "yellow" if notes else "green"
    return landed, str(fix.seq), position, _ago(event.age_s), Text("; ".join(notes) or "ok", style=style)


def render(watch: Watch, now: datetime, *, listening: str) -> Group:
    who = watch.device_id or watch.vehicle_id
    last = watch.last_fix
    summary = Table.grid(padding=(0, 2))
    summary.add_row(
        f"[bold]{who}[/]",
        f"fixes [bold]{watch.fixes}[/]",
        f"dead letters [bold {'red' if watch.dead_letters else 'green'}]{watch.dead_letters}[/]",
        f"rate [bold]{watch.rate_per_min(now)}[/]/min",
        f"gaps [bold]{watch.gaps}[/] ({watch.missing_seqs} seq missing)",
    )
    if last is not None and watch.last_landed is not None:
        summary.add_row(
            f"vehicle {last.vehicle_id}",
            f"last fix {_ago((now - last.ts).total_seconds())} ago",
            f"at {last.lat:.5f}, {last.lon:.5f}",
            f"landed {_ago((now - watch.last_landed).total_seconds())} ago",
            f"seq {last.seq}",
        )
    else:
        summary.add_row("[yellow]nothing from this terminal yet[/]", listening, "", "", "")
    table = Table(expand=True)
    for column in ("landed", "seq", "position", "fix age"):
        table.add_column(column, no_wrap=True)
    table.add_column("", ratio=1)
    for event in watch.events:
        table.add_row(*describe(event))
    return Group(summary, table)


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------


def follow(
    settings: Settings,
    watch: Watch,
    *,
    since_s: float,
    telemetry_topic: str = topics.TELEMETRY,
    dlq_topic: str = topics.TELEMETRY_DLQ,
) -> Generator[Event | None, None, None]:
    """Yield the watched terminal's events from ``since_s`` ago on, then live; None first once
    the consumer is positioned, then whenever nothing arrived for a while."""
    consumer = make_consumer(settings, group_id=None, isolation_level="read_uncommitted")
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in (telemetry_topic, dlq_topic)
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        start_ms = int((time.time() - since_s) * 1000)
        offsets = consumer.offsets_for_times({tp: start_ms for tp in parts})
        for tp in parts:
            found = offsets.get(tp)
            if found is None:
                consumer.seek_to_end(tp)
            else:
                consumer.seek(tp, found.offset)
        for tp in parts:
            consumer.position(tp)  # resolve "the end" now, not at the first poll
        yield None  # positioned: whatever lands from here on will be seen
        while True:
            batches = consumer.poll(timeout_ms=500)
            if not batches:
                yield None
            for tp, records in batches.items():
                for record in records:
                    landed = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                    event = _event(watch, tp.topic == dlq_topic, record.value, landed)
                    if event is not None:
                        yield event
    finally:
        consumer.close()


def _event(watch: Watch, dead: bool, value: bytes, landed: datetime) -> Event | None:
    try:
        if dead:
            letter = parse_dead_letter(value)
            return watch.add_letter(letter, landed) if watch.matches_letter(letter) else None
        if not watch.may_match(value):
            return None
        fix = parse_fix(value, max_future=timedelta(days=3650))  # already checked by the bridge
    except ContractError:
        return None  # not ours to judge here; the bridge wrote it
    return watch.add_fix(fix, landed) if watch.matches_fix(fix) else None
