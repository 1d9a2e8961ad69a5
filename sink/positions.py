"""Telemetry fix v1 -> positions (hypertable): typed in the sink, org from a cache of the registry.

The sink parses each fix (orjson) into typed column values and copies them in binary, so the
server only stores rows: parsing the JSON in the merge (`json_to_record`) was a third of the
server's CPU per fix, and the server's one core bounds the sink (see bench/bench_sink.py).
Decoding checks types only, not ranges: the telemetry topic is written only by the bridge, which
has already run the whole contract (`parse_fix`). A record that fails decoding is explained by
`parse_fix` (its dead letter names the field and value); ranges are enforced again by the table's
NOT NULL and CHECK constraints, and a record the database refuses is explained the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg

from fleetwatch import topics
from fleetwatch.records import FIX_VERSION, ContractError, parse_fix, parse_timestamp
from sink.base import Record, Row, StagedSink, copy_rows, record_time, value_of

#: The bridge checked the clock when the fix arrived; a backlog drained later must not fail here.
_NO_FUTURE_CHECK = timedelta(days=365 * 100)
#: The org of a vehicle that is not in the registry (as detection calls them); its fixes are kept.
UNREGISTERED = "unregistered"
_INT8_MAX = 2**63 - 1
_FLOAT4_MAX = 3.4028234663852886e38
#: positions' columns as the sink copies them (a row from `typed_fix`, then the org).
COLUMNS = (
    ("ts", "timestamptz"), ("vehicle_id", "text"), ("device_id", "text"), ("seq", "int8"),
    ("lat", "float8"), ("lon", "float8"), ("speed_kmh", "float4"), ("heading", "float4"),
    ("ignition", "bool"), ("fix_valid", "bool"), ("alarm", "int8"), ("odometer_km", "float8"),
    ("alt_m", "float4"), ("sats", "int2"), ("received_at", "timestamptz"), ("org", "text"),
)  # fmt: skip
_NAMES = ", ".join(name for name, _ in COLUMNS)
_NUMBER = (float, int)
_ON_CONFLICT = " ON CONFLICT ON CONSTRAINT positions_natural_key DO NOTHING"
log = logging.getLogger("fleetwatch.sink")


def typed_fix(raw: bytes, received_at: datetime) -> Row | None:
    """The fix's column values (`COLUMNS` order, without the org) when every field has its
    column's type, else None. Ranges are left to the bridge (which checked them) and to the
    table's CHECK constraints; the reason for a None is `parse_fix`'s to give."""
    try:
        obj = orjson.loads(raw)
        v, ts, vehicle_id, device_id = obj["v"], obj["ts"], obj["vehicle_id"], obj["device_id"]
        seq, acc = obj["seq"], obj["acc"]
        lat, lon, speed, heading = obj["lat"], obj["lon"], obj["speed_kmh"], obj["heading"]
    except (orjson.JSONDecodeError, KeyError, TypeError):  # TypeError: not a JSON object
        return None
    get = obj.get
    fix_valid, alarm, odometer = get("fix_valid"), get("alarm"), get("odometer_km")
    alt, sats = get("alt_m"), get("sats")
    # `type(x) is int` keeps booleans out (True == 1); JSON numbers may be written without a fraction.
    if not (
        type(v) is int and v == FIX_VERSION and type(ts) is str and type(vehicle_id) is str
        and type(device_id) is str and type(seq) is int and type(acc) is bool and type(lat) in _NUMBER
        and type(lon) in _NUMBER and type(speed) in _NUMBER and type(heading) in _NUMBER
        and (fix_valid is None or type(fix_valid) is bool) and (alarm is None or type(alarm) is int)
        and (odometer is None or type(odometer) in _NUMBER) and (alt is None or type(alt) in _NUMBER)
        and (sats is None or type(sats) is int)
        # A real column would store a larger number as infinity, which no CHECK catches.
        and -_FLOAT4_MAX <= speed <= _FLOAT4_MAX and (alt is None or -_FLOAT4_MAX <= alt <= _FLOAT4_MAX)
    ):  # fmt: skip
        return None
    try:
        # The common form here; the contract's own parser for the rest (whitespace, naive, junk).
        stamp: datetime | None = datetime.fromisoformat(ts)
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        try:
            stamp = parse_timestamp(ts)
        except ContractError:
            return None
    return (stamp, vehicle_id, device_id, seq, lat, lon, speed, heading, acc, fix_valid, alarm, odometer, alt,
            sats, received_at)  # fmt: skip


@dataclass
class VehicleOrgs:
    """vehicle_id -> org from the registry's ``vehicles`` table, cached for the sink's lifetime.

    A vehicle missing from the cache is looked up by the batch that brings it, so one registered
    while the sink runs gets its org from its next batch on; unregistered ones are looked up
    again by every batch they are in (one indexed query per batch). The whole cache is reloaded
    every ``reload_s``, which follows a vehicle moved to another org (until then its fixes keep
    the old one) and forgets removed vehicles.
    """

    reload_s: float = 60.0
    _orgs: dict[str, str] = field(default_factory=dict)
    _loaded_at: float | None = None

    def resolve(self, cur: psycopg.Cursor[Any], vehicle_ids: Iterable[str]) -> dict[str, str]:
        """The cache, holding every registered vehicle among ``vehicle_ids``."""
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self.reload_s:
            self._orgs = dict(cur.execute("SELECT vehicle_id, org FROM vehicles").fetchall())
            self._loaded_at = now
            return self._orgs
        # A NUL cannot be a registered id, nor a query parameter (the driver refuses it).
        missing = [v for v in set(vehicle_ids) if v not in self._orgs and "\x00" not in v]
        if missing:
            sql = "SELECT vehicle_id, org FROM vehicles WHERE vehicle_id = ANY(%s)"
            self._orgs.update(cur.execute(sql, (missing,)).fetchall())
        return self._orgs


@dataclass
class PositionsSink(StagedSink):
    topic: str = topics.TELEMETRY
    orgs: VehicleOrgs = field(default_factory=VehicleOrgs)
    #: (backend pid, may COPY straight into positions) of the connection last written through.
    _direct: tuple[int, bool] | None = field(default=None, repr=False)
    table = "positions"
    columns = COLUMNS
    merge_sql = f"INSERT INTO positions ({_NAMES}) SELECT {_NAMES} FROM {{stage}}"

    def decode(self, record: Record) -> Row:
        raw = value_of(record)
        row = typed_fix(raw, record_time(record))
        if row is None:
            self.check(record)  # raises the contract's reason (which field, which value)
            raise ContractError("bad_value", None, raw[:80], "the contract accepts it; the sink cannot")
        if row[3] > _INT8_MAX:  # the contract sets no upper bound; the column does
            raise ContractError("out_of_range", "seq", row[3], "beyond the positions table's bigint")
        return row

    def check(self, record: Record) -> None:
        parse_fix(value_of(record), max_future=_NO_FUTURE_CHECK)

    def write(self, cur: psycopg.Cursor[Any], rows: Sequence[Row]) -> int:
        """COPY straight into positions where the session may; else staged with a plain INSERT.
        Either way, a fix already stored (a replay after a crash, a fix delivered twice) aborts
        that attempt, and the batch is staged again with ``ON CONFLICT DO NOTHING``, which costs
        ~20 % more server time per row than a plain INSERT (measured: 60k vs 72k rows/s)."""
        if not rows:
            return 0
        orgs = self.orgs.resolve(cur, (row[1] for row in rows))
        rows = [(*row, orgs.get(row[1], UNREGISTERED)) for row in rows]
        try:
            with cur.connection.transaction():  # a savepoint: the aborted attempt leaves nothing
                if self._copies_directly(cur):
                    return copy_rows(cur, self.table, self.columns, rows)
                return self.write_staged(cur, rows, self.merge_sql)
        except psycopg.errors.UniqueViolation:
            return self.write_staged(cur, rows, self.merge_sql + _ON_CONFLICT)

    def _copies_directly(self, cur: psycopg.Cursor[Any]) -> bool:
        """Whether this session may COPY into positions (asked once per connection).

        PostgreSQL refuses COPY FROM into a table whose row-level security applies to the
        session, even though the writer's policy admits every row: only the table's owner or a
        login with BYPASSRLS (the stack grants it to the sink's login) copies directly.
        """
        backend = cur.connection.info.backend_pid
        if self._direct is None or self._direct[0] != backend:
            row = cur.execute("SELECT NOT row_security_active('positions')").fetchone()
            self._direct = (backend, bool(row and row[0]))
            if self._direct[1]:
                log.info("positions: COPY straight into the table")
            else:
                log.info("positions: staged INSERT (row-level security applies to the login; with BYPASSRLS "
                         "the sink would COPY straight into the table)")  # fmt: skip
        return self._direct[1]
