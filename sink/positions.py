"""Telemetry fix v1 -> positions (hypertable); the fix's org comes from the vehicle registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kafka.consumer.fetcher import ConsumerRecord

from fleetwatch import topics
from fleetwatch.records import parse_fix
from sink.base import Row, StagedSink, record_time

#: The bridge checked the clock when the fix arrived; a backlog drained later must not fail here.
_NO_FUTURE_CHECK = timedelta(days=365 * 100)


@dataclass
class PositionsSink(StagedSink):
    topic: str = topics.TELEMETRY
    table = "positions"
    columns = (
        ("ts", "timestamptz"), ("vehicle_id", "text"), ("device_id", "text"), ("seq", "bigint"),
        ("lat", "float8"), ("lon", "float8"), ("speed_kmh", "float4"), ("heading", "float4"),
        ("ignition", "bool"), ("fix_valid", "bool"), ("alarm", "bigint"), ("odometer_km", "float8"),
        ("alt_m", "float4"), ("sats", "int2"), ("received_at", "timestamptz"),
    )  # fmt: skip
    # Unregistered vehicles keep their fixes (org 'unregistered', as detection calls them).
    merge_sql = """
        INSERT INTO positions (ts, vehicle_id, device_id, org, seq, lat, lon, speed_kmh, heading, ignition,
                               fix_valid, alarm, odometer_km, alt_m, sats, received_at)
        SELECT s.ts, s.vehicle_id, s.device_id, coalesce(v.org, 'unregistered'), s.seq, s.lat, s.lon,
               s.speed_kmh, s.heading, s.ignition, s.fix_valid, s.alarm, s.odometer_km, s.alt_m, s.sats,
               s.received_at
        FROM {stage} s LEFT JOIN vehicles v ON v.vehicle_id = s.vehicle_id
        ON CONFLICT ON CONSTRAINT positions_natural_key DO NOTHING
    """

    def decode(self, record: ConsumerRecord) -> Row:
        fix = parse_fix(record.value, max_future=_NO_FUTURE_CHECK)
        return (
            fix.ts, fix.vehicle_id, fix.device_id, fix.seq, fix.lat, fix.lon, fix.speed_kmh, fix.heading,
            fix.acc, fix.fix_valid, fix.alarm, fix.odometer_km, fix.alt_m, fix.sats, record_time(record),
        )  # fmt: skip
