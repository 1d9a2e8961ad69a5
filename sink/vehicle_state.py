"""Per-vehicle live state (compacted topic, issue 10's VehicleStatus v1) -> vehicle_state.

One row per vehicle. The topic is keyed by vehicle_id, so one vehicle's states share a
partition and its offset orders them: the offset is the revision, and an older state (a
replay) never replaces a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch import topics
from fleetwatch.records import parse_vehicle_status
from sink.base import Record, Row, StagedSink, value_of


@dataclass
class VehicleStateSink(StagedSink):
    topic: str = topics.VEHICLE_STATE
    table = "vehicle_state"
    columns = (
        ("vehicle_id", "text"), ("org", "text"), ("ts", "timestamptz"), ("lat", "float8"), ("lon", "float8"),
        ("speed_kmh", "float4"), ("ignition", "bool"), ("status", "text"), ("open_alert_ids", "text[]"),
        ("computed_at", "timestamptz"), ("revision", "bigint"),
    )  # fmt: skip
    merge_sql = """
        INSERT INTO vehicle_state (vehicle_id, org, ts, lat, lon, speed_kmh, ignition, status, open_alert_ids,
                                   computed_at, revision)
        SELECT DISTINCT ON (vehicle_id) vehicle_id, org, ts, lat, lon, speed_kmh, ignition, status,
               open_alert_ids, computed_at, revision
        FROM {stage} ORDER BY vehicle_id, revision DESC
        ON CONFLICT (vehicle_id) DO UPDATE SET
            org = EXCLUDED.org, ts = EXCLUDED.ts, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
            speed_kmh = EXCLUDED.speed_kmh, ignition = EXCLUDED.ignition, status = EXCLUDED.status,
            open_alert_ids = EXCLUDED.open_alert_ids, computed_at = EXCLUDED.computed_at,
            revision = EXCLUDED.revision, stored_at = now()
        WHERE EXCLUDED.revision > vehicle_state.revision
    """

    def decode(self, record: Record) -> Row:
        state = parse_vehicle_status(value_of(record))
        return (
            state.vehicle_id, state.org, state.ts, state.lat, state.lon, state.speed_kmh, state.acc,
            state.status.value, list(state.open_alerts), state.updated_at, record.offset,
        )  # fmt: skip
