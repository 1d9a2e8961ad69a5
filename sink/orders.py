"""Dispatch orders -> orders; a later record of the same order (its Kafka offset) replaces it."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.types.json import Jsonb

from fleetwatch import topics
from fleetwatch.records import parse_order
from sink.base import Record, Row, StagedSink, value_of


@dataclass
class OrdersSink(StagedSink):
    topic: str = topics.ORDERS
    table = "orders"
    columns = (
        ("order_id", "text"), ("vehicle_id", "text"), ("org", "text"), ("start_at", "timestamptz"),
        ("end_at", "timestamptz"), ("purpose", "text"), ("destination", "text"),
        ("destination_area", "jsonb"), ("status", "text"), ("revision", "bigint"),
    )  # fmt: skip
    # The orders topic is keyed by order_id, so one order's versions share a partition and its
    # offset orders them: the offset is the revision.
    merge_sql = """
        INSERT INTO orders (order_id, vehicle_id, org, start_at, end_at, purpose, destination,
                            destination_area, status, revision)
        SELECT DISTINCT ON (order_id) order_id, vehicle_id, org, start_at, end_at, purpose, destination,
               destination_area, status, revision
        FROM {stage} ORDER BY order_id, revision DESC
        ON CONFLICT (order_id) DO UPDATE SET
            vehicle_id = EXCLUDED.vehicle_id, org = EXCLUDED.org, start_at = EXCLUDED.start_at,
            end_at = EXCLUDED.end_at, purpose = EXCLUDED.purpose, destination = EXCLUDED.destination,
            destination_area = EXCLUDED.destination_area, status = EXCLUDED.status,
            revision = EXCLUDED.revision, updated_at = now()
        WHERE EXCLUDED.revision > orders.revision
    """

    def decode(self, record: Record) -> Row:
        order = parse_order(value_of(record))
        area = Jsonb(order.destination_area) if order.destination_area is not None else None
        return (
            order.order_id, order.vehicle_id, order.org, order.start, order.end, order.purpose,
            order.destination, area, order.status.value, record.offset,
        )  # fmt: skip
