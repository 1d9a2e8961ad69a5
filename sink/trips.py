"""Trips (revisioned upserts and retractions) -> trips; a retracted trip stays, marked."""

from __future__ import annotations

from dataclasses import dataclass

from kafka.consumer.fetcher import ConsumerRecord

from fleetwatch import topics
from fleetwatch.records import parse_trip
from sink.base import Row, StagedSink
from sink.envelope import open_envelope


@dataclass
class TripsSink(StagedSink):
    topic: str = topics.TRIPS
    table = "trips"
    columns = (
        ("trip_id", "text"), ("vehicle_id", "text"), ("org", "text"), ("start_at", "timestamptz"),
        ("end_at", "timestamptz"), ("start_lat", "float8"), ("start_lon", "float8"), ("end_lat", "float8"),
        ("end_lon", "float8"), ("distance_m", "float8"), ("max_speed_kmh", "float4"), ("fix_count", "int4"),
        ("order_id", "text"), ("revision", "bigint"), ("retracted", "bool"), ("retract_reason", "text"),
    )  # fmt: skip
    merge_sql = """
        INSERT INTO trips (trip_id, vehicle_id, org, start_at, end_at, start_lat, start_lon, end_lat,
                           end_lon, distance_m, max_speed_kmh, fix_count, order_id, revision, retracted,
                           retract_reason)
        SELECT DISTINCT ON (trip_id) trip_id, vehicle_id, org, start_at, end_at, start_lat, start_lon,
               end_lat, end_lon, distance_m, max_speed_kmh, fix_count, order_id, revision, retracted,
               retract_reason
        FROM {stage} ORDER BY trip_id, revision DESC
        ON CONFLICT (trip_id) DO UPDATE SET
            vehicle_id = EXCLUDED.vehicle_id, org = EXCLUDED.org, start_at = EXCLUDED.start_at,
            end_at = EXCLUDED.end_at, start_lat = EXCLUDED.start_lat, start_lon = EXCLUDED.start_lon,
            end_lat = EXCLUDED.end_lat, end_lon = EXCLUDED.end_lon, distance_m = EXCLUDED.distance_m,
            max_speed_kmh = EXCLUDED.max_speed_kmh, fix_count = EXCLUDED.fix_count,
            order_id = EXCLUDED.order_id, revision = EXCLUDED.revision, retracted = EXCLUDED.retracted,
            retract_reason = EXCLUDED.retract_reason, updated_at = now()
        WHERE EXCLUDED.revision > trips.revision
    """

    def decode(self, record: ConsumerRecord) -> Row:
        env = open_envelope(record.value)
        trip = parse_trip(env.body)
        return (
            trip.trip_id, trip.vehicle_id, trip.org, trip.start, trip.end, trip.start_lat, trip.start_lon,
            trip.end_lat, trip.end_lon, trip.distance_m, trip.max_speed_kmh, trip.fix_count, trip.order_id,
            env.revision, env.retracted, env.reason,
        )  # fmt: skip
