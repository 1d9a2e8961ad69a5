"""Trip changes (upserts and retractions) -> trips; a retracted trip stays, marked."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwatch import topics
from fleetwatch.records import parse_change
from sink.base import Record, Row, StagedSink, value_of

_TRIP_COLUMNS = ("vehicle_id", "org", "start_at", "end_at", "start_lat", "start_lon", "end_lat", "end_lon",
                 "distance_m", "max_speed_kmh", "fix_count", "order_id")  # fmt: skip
_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_TRIP_COLUMNS, "revision", "retracted", "retract_reason"))


@dataclass
class TripsSink(StagedSink):
    topic: str = topics.TRIPS
    table = "trips"
    columns = (
        ("trip_id", "text"), ("vehicle_id", "text"), ("org", "text"), ("start_at", "timestamptz"),
        ("end_at", "timestamptz"), ("start_lat", "float8"), ("start_lon", "float8"), ("end_lat", "float8"),
        ("end_lon", "float8"), ("distance_m", "float8"), ("max_speed_kmh", "float4"), ("fix_count", "int4"),
        ("order_id", "text"), ("revision", "bigint"), ("retracted", "bool"), ("retract_reason", "text"),
        ("has_record", "bool"), ("kafka_offset", "bigint"),
    )  # fmt: skip
    # Highest revision per trip wins (a tie: the later offset). A retraction without the trip
    # marks the stored row; with the trip it is stored, marked.
    merge_sql = f"""
        WITH latest AS (
            SELECT DISTINCT ON (trip_id) * FROM {{stage}} ORDER BY trip_id, revision DESC, kafka_offset DESC
        ), bare_retractions AS (
            UPDATE trips t SET retracted = true, retract_reason = l.retract_reason, revision = l.revision,
                               updated_at = now()
            FROM latest l WHERE NOT l.has_record AND t.trip_id = l.trip_id AND l.revision >= t.revision
            RETURNING t.trip_id
        )
        INSERT INTO trips (trip_id, {", ".join(_TRIP_COLUMNS)}, revision, retracted, retract_reason)
        SELECT trip_id, {", ".join(_TRIP_COLUMNS)}, revision, retracted, retract_reason
        FROM latest WHERE has_record
        ON CONFLICT (trip_id) DO UPDATE SET {_SET}, updated_at = now()
        WHERE EXCLUDED.revision >= trips.revision
    """

    def decode(self, record: Record) -> Row:
        change = parse_change(value_of(record), "trip")
        tail = (change.revision, change.retracted, change.reason, change.record is not None, record.offset)
        trip = change.trip
        if trip is None:
            return (change.id, change.vehicle_id, *([None] * (len(_TRIP_COLUMNS) - 1)), *tail)
        return (
            trip.trip_id, trip.vehicle_id, trip.org, trip.start, trip.end, trip.start_lat, trip.start_lon,
            trip.end_lat, trip.end_lon, trip.distance_m, trip.max_speed_kmh, trip.fix_count, trip.order_id,
            *tail,
        )  # fmt: skip
