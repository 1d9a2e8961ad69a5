"""Per-vehicle live state (compacted topic, issue 10's VehicleStatus v1) -> vehicle_state.

One row per vehicle. The topic is keyed by vehicle_id, so one vehicle's states share a
partition and its offset orders them: the offset is the revision, and an older state (a
replay) never replaces a newer one. Mirrors `fleetwatch.records.parse_vehicle_status` on branch
issue-10 (fields v, vehicle_id, org, ts, lat, lon, speed_kmh, acc, status, open_alerts,
updated_at); once that is merged, it should call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from fleetwatch import topics
from fleetwatch.records import ContractError, parse_timestamp
from sink.base import Record, Row, StagedSink, value_of

VERSION = 1
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
        raw = value_of(record)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ContractError("malformed_json", None, raw[:80], f"not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ContractError("malformed_json", None, body, "expected a JSON object")
        if body.get("v") != VERSION or isinstance(body.get("v"), bool):
            raise ContractError("unknown_version", "v", body.get("v"), f"this reader speaks v{VERSION}")
        status = _require(body, "status", _is_text, "a string")
        if status not in STATUSES:
            raise ContractError("bad_value", "status", status, f"must be one of: {', '.join(STATUSES)}")
        open_alerts = body.get("open_alerts") or []
        if not isinstance(open_alerts, list) or not all(isinstance(i, str) for i in open_alerts):
            raise ContractError("bad_type", "open_alerts", open_alerts, "expected a list of alert ids")
        return (
            _require(body, "vehicle_id", _is_text, "a string"), _require(body, "org", _is_text, "a string"),
            parse_timestamp(body.get("ts"), "ts"), float(_require(body, "lat", _is_number, "a number")),
            float(_require(body, "lon", _is_number, "a number")),
            float(_require(body, "speed_kmh", _is_number, "a number")),
            _require(body, "acc", lambda v: isinstance(v, bool), "true or false"), status, open_alerts,
            parse_timestamp(body.get("updated_at"), "updated_at"), record.offset,
        )  # fmt: skip
