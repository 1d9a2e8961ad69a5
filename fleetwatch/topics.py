"""Kafka topic names, partition counts and retention: the one list the stack creates from."""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"
    purpose: str = ""


TELEMETRY = "fleetwatch.telemetry.v1"
TELEMETRY_DLQ = "fleetwatch.telemetry.dlq.v1"
ORDERS = "fleetwatch.orders.v1"
TRIPS = "fleetwatch.trips.v1"
ALERTS = "fleetwatch.alerts.v1"
VEHICLE_STATE = "fleetwatch.vehicle_state.v1"
SINK_DLQ = "fleetwatch.sink.dlq.v1"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(TELEMETRY, 6, 7 * DAY_MS, purpose="telemetry fix v1, keyed by vehicle_id"),
    TopicSpec(TELEMETRY_DLQ, 1, 30 * DAY_MS, purpose="rejected input: original bytes + reason"),
    TopicSpec(ORDERS, 3, 90 * DAY_MS, "compact,delete", purpose="dispatch orders, keyed by order_id"),
    TopicSpec(TRIPS, 6, 30 * DAY_MS, purpose="segmented trips, keyed by vehicle_id"),
    TopicSpec(ALERTS, 3, 90 * DAY_MS, purpose="alerts, keyed by alert_id"),
    TopicSpec(VEHICLE_STATE, 6, 7 * DAY_MS, "compact,delete", purpose="latest state per vehicle (live map)"),
    TopicSpec(SINK_DLQ, 1, 30 * DAY_MS, purpose="records the database refused: original bytes + reason"),
)
