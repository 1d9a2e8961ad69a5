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
OPS = "fleetwatch.ops.v1"
WORKER_DLQ = "fleetwatch.worker.dlq.v1"
SINK_DLQ = "fleetwatch.sink.dlq.v1"
REGISTRY = "fleetwatch.registry.v1"

#: The worker's per-vehicle state table is co-partitioned with these: same key (vehicle_id), same
#: partition count, so one worker owns a vehicle's fixes, its orders and its state.
TELEMETRY_PARTITIONS = 6

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(TELEMETRY, TELEMETRY_PARTITIONS, 7 * DAY_MS, purpose="telemetry fix v1, keyed by vehicle_id"),
    TopicSpec(TELEMETRY_DLQ, 1, 30 * DAY_MS, purpose="rejected input: original bytes + reason"),
    # Keyed by vehicle_id and co-partitioned with telemetry (the worker joins them per vehicle);
    # not compacted: compaction by vehicle would keep only each vehicle's latest order.
    TopicSpec(ORDERS, TELEMETRY_PARTITIONS, 90 * DAY_MS, purpose="dispatch order v1, keyed by vehicle_id"),
    TopicSpec(TRIPS, 6, 30 * DAY_MS, purpose="trip changes (upsert/retract), keyed by vehicle_id"),
    TopicSpec(ALERTS, 3, 90 * DAY_MS, purpose="alert changes (upsert/retract), keyed by vehicle_id"),
    TopicSpec(
        VEHICLE_STATE, 6, 7 * DAY_MS, "compact,delete", purpose="live map feed, latest per vehicle_id"
    ),
    TopicSpec(OPS, 1, 30 * DAY_MS, purpose="worker operational events (calendar gaps, late fixes, reloads)"),
    TopicSpec(WORKER_DLQ, 1, 30 * DAY_MS, purpose="records the worker cannot use: bytes + reason"),
    TopicSpec(SINK_DLQ, 1, 30 * DAY_MS, purpose="records the database refused: original bytes + reason"),
    # Compacted only (retention -1): the bridge and the gateway rebuild their device table from
    # it at start, so no registration may ever expire; one partition keeps one order of changes.
    TopicSpec(REGISTRY, 1, -1, "compact", purpose="device registration v1, latest per device_id"),
)
