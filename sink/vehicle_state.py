"""Per-vehicle live state (compacted topic) -> vehicle_state, one row per vehicle, newest wins."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord

from fleetwatch import topics
from fleetwatch.records import ContractError, parse_timestamp
from sink.base import Row, StagedSink
from sink.envelope import open_envelope

STATUSES = ("moving", "parked", "offline", "alerting")


def _require(body: dict[str, Any], name: str, ok: Callable[[Any], bool], expected: str) -> Any:
    value = body.get(name)
    if value is None:
        raise ContractError("missing_field", name, None, "required field is missing")
    if not ok(value):
        raise ContractError("bad_type", name, value, f"expected {expected}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


@dataclass
class VehicleStateSink(StagedSink):
    topic: str = topics.VEHICLE_STATE
    table = "vehicle_state"
    columns = (
        ("vehicle_id", "text"), ("org", "text"), ("ts", "timestamptz"), ("lat", "float8"), ("lon", "float8"),
        ("speed_kmh", "float4"), ("heading", "float4"), ("ignition", "bool"), ("status", "text"),
        ("open_alert_ids", "text[]"), ("revision", "bigint"),
    )  # fmt: skip
    merge_sql = """
        INSERT INTO vehicle_state (vehicle_id, org, ts, lat, lon, speed_kmh, heading, ignition, status,
                                   open_alert_ids, revision)
        SELECT DISTINCT ON (vehicle_id) vehicle_id, org, ts, lat, lon, speed_kmh, heading, ignition, status,
               open_alert_ids, revision
        FROM {stage} ORDER BY vehicle_id, revision DESC
        ON CONFLICT (vehicle_id) DO UPDATE SET
            org = EXCLUDED.org, ts = EXCLUDED.ts, lat = EXCLUDED.lat, lon = EXCLUDED.lon,
            speed_kmh = EXCLUDED.speed_kmh, heading = EXCLUDED.heading, ignition = EXCLUDED.ignition,
            status = EXCLUDED.status, open_alert_ids = EXCLUDED.open_alert_ids,
            revision = EXCLUDED.revision, updated_at = now()
        WHERE EXCLUDED.revision > vehicle_state.revision
    """

    def decode(self, record: ConsumerRecord) -> Row:
        env = open_envelope(record.value)
        body = env.body
        status = _require(body, "status", _is_text, "a string")
        if status not in STATUSES:
            raise ContractError("bad_value", "status", status, f"must be one of: {', '.join(STATUSES)}")
        open_ids = body.get("open_alert_ids") or []
        if not isinstance(open_ids, list) or not all(isinstance(i, str) for i in open_ids):
            raise ContractError("bad_type", "open_alert_ids", open_ids, "expected a list of alert ids")
        heading = body.get("heading")
        if heading is not None and not _is_number(heading):
            raise ContractError("bad_type", "heading", heading, "expected a number")
        return (
            _require(body, "vehicle_id", _is_text, "a string"), _require(body, "org", _is_text, "a string"),
            parse_timestamp(body.get("ts"), "ts"), float(_require(body, "lat", _is_number, "a number")),
            float(_require(body, "lon", _is_number, "a number")),
            float(_require(body, "speed_kmh", _is_number, "a number")),
            None if heading is None else float(heading),
            _require(body, "ignition", lambda v: isinstance(v, bool), "true or false"), status, open_ids,
            env.revision,
        )  # fmt: skip
