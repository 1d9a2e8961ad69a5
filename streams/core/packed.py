"""Fixes packed as 48-byte rows: the reorder buffer and the replay history hold bytes, not objects.

A row keeps what the stages after reorder read (`ROW_FIELDS`); heading, odometer, altitude and
satellites stay in the telemetry topic (the durable log) and are not needed to re-evaluate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from fleetwatch.records import Fix

#: ts (µs since the epoch), lat, lon, speed_kmh, seq, alarm, UTC offset (minutes), flags, device
ROW = struct.Struct("<qdddqIhBB")
ROW_SIZE = ROW.size  # 48
ROW_FIELDS = ("ts", "lat", "lon", "speed_kmh", "seq", "alarm", "acc", "fix_valid", "device_id")
_TS = struct.Struct("<q")

_ACC, _VALID_KNOWN, _VALID, _ALARM_KNOWN = 1, 2, 4, 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_ZONES: dict[int, timezone] = {}


def micros(ts: datetime) -> int:
    return (ts - _EPOCH) // _ONE_US


def iso(ts_us: int) -> str:
    return (_EPOCH + ts_us * _ONE_US).isoformat()


def pack(fix: Fix, device: int, ts_us: int | None = None) -> bytes:
    offset = fix.ts.utcoffset() or timedelta(0)
    flags = (
        (_ACC if fix.acc else 0)
        | (0 if fix.fix_valid is None else _VALID_KNOWN | (_VALID if fix.fix_valid else 0))
        | (0 if fix.alarm is None else _ALARM_KNOWN)
    )
    return ROW.pack(
        micros(fix.ts) if ts_us is None else ts_us, fix.lat, fix.lon, fix.speed_kmh, fix.seq, fix.alarm or 0,
        offset // timedelta(minutes=1), flags, device,
    )  # fmt: skip


def row_ts(row: bytes | bytearray | memoryview, at: int = 0) -> int:
    return int(_TS.unpack_from(row, at)[0])


def unpack(row: bytes | memoryview, vehicle_id: str, devices: list[str]) -> Fix:
    us, lat, lon, speed, seq, alarm, offset, flags, device = ROW.unpack(row)
    tz = _ZONES.get(offset)
    if tz is None:
        tz = _ZONES[offset] = timezone(timedelta(minutes=offset))
    ts = datetime.fromtimestamp(us // 1_000_000, tz).replace(microsecond=us % 1_000_000)
    return Fix(
        device_id=devices[device],
        vehicle_id=vehicle_id,
        ts=ts,
        lat=lat,
        lon=lon,
        speed_kmh=speed,
        heading=0.0,
        acc=bool(flags & _ACC),
        seq=seq,
        alarm=alarm if flags & _ALARM_KNOWN else None,
        fix_valid=bool(flags & _VALID) if flags & _VALID_KNOWN else None,
    )


def order_key(row: bytes, devices: list[str]) -> tuple[int, str, int]:
    """The release order of rows: (ts, device_id, seq), as the reorder stage uses it."""
    us, _lat, _lon, _speed, seq, _alarm, _off, _flags, device = ROW.unpack(row)
    return (us, devices[device], seq)


def dedup_key(device: int, seq: int) -> int:
    """(device index, seq) as one int: the dedup window maps it to the fix's ts (µs)."""
    return (device << 40) | (seq & 0xFF_FFFF_FFFF)


@dataclass
class History:
    """Released rows in release order (event-time order between re-evaluations), absolute
    indices `base` .. `end - 1`; kept for re-evaluating late fixes, never persisted."""

    rows: bytearray = field(default_factory=bytearray)
    base: int = 0

    def __len__(self) -> int:
        return len(self.rows) // ROW_SIZE

    @property
    def end(self) -> int:
        return self.base + len(self)

    def append(self, row: bytes) -> None:
        self.rows += row

    def since(self, index: int) -> list[bytes]:
        start = (index - self.base) * ROW_SIZE
        mv = memoryview(self.rows)
        return [bytes(mv[i : i + ROW_SIZE]) for i in range(start, len(self.rows), ROW_SIZE)]

    def truncate(self, index: int) -> None:
        """Forget rows from `index` on (they are about to be replayed)."""
        del self.rows[(index - self.base) * ROW_SIZE :]

    def drop_before(self, index: int) -> None:
        del self.rows[: (index - self.base) * ROW_SIZE]
        self.base = index

    def contains(self, device: int, seq: int, ts_us: int) -> bool:
        """A row with this device, seq and ts (binary search by ts: rows are in ts order)."""
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if row_ts(self.rows, mid * ROW_SIZE) < ts_us:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo, len(self)):
            us, *_, row_seq, _alarm, _off, _flags, row_dev = ROW.unpack_from(self.rows, i * ROW_SIZE)
            if us != ts_us:
                return False
            if row_seq == seq and row_dev == device:
                return True
        return False
