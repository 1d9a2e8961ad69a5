"""The stream workers' change envelope on the trips and alerts topics (issue 10's `Change` v1).

Wire format (JSON): ``v`` (1), ``kind`` (``trip`` | ``alert``), ``op`` (``upsert`` |
``retract``), ``id``, ``vehicle_id``, ``revision`` (grows with every change the worker emits for
that vehicle; per id the highest wins, a tie goes to the later offset), ``emitted_at``,
``record`` (the Trip / Alert v1 object; required for an upsert, optional for a retraction),
``reason`` and ``order_id`` (a retraction's cause and the exempting order). This reader mirrors
`fleetwatch.records.parse_change` on branch issue-10; once that is merged, it should call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fleetwatch.records import ContractError, parse_timestamp

CHANGE_VERSION = 1
OPS = ("upsert", "retract")


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    id: str
    vehicle_id: str
    revision: int
    retracted: bool
    #: The record's own JSON object, or None (a retraction may carry only the id).
    record: dict[str, Any] | None
    reason: str | None
    order_id: str | None


def _text(obj: dict[str, Any], name: str, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise ContractError("missing_field", name, None, "required field is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ContractError("bad_type", name, value, "expected a non-empty string")
    return value


def open_envelope(raw: bytes, kind: str) -> Envelope:
    """Parse a change of ``kind``; raise `ContractError` naming the field that is wrong."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError("malformed_json", None, raw[:80].decode("utf-8", "replace"),
                            f"not valid JSON: {exc}") from None  # fmt: skip
    if not isinstance(obj, dict):
        raise ContractError("malformed_json", None, obj, "expected a JSON object")
    if obj.get("v") != CHANGE_VERSION or isinstance(obj.get("v"), bool):
        expected = f"this reader speaks change v{CHANGE_VERSION}"
        raise ContractError("unknown_version", "v", obj.get("v"), expected)
    if obj.get("kind") != kind:
        raise ContractError("bad_value", "kind", obj.get("kind"), f"this topic carries {kind} changes")
    op = obj.get("op")
    if op not in OPS:
        raise ContractError("bad_value", "op", op, f"must be one of: {', '.join(OPS)}")
    revision = obj.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or not 0 <= revision < 2**63:
        raise ContractError("bad_value", "revision", revision, "expected a non-negative 64-bit integer")
    parse_timestamp(obj.get("emitted_at"), "emitted_at")
    record = obj.get("record")
    if record is None and op == "upsert":
        raise ContractError("missing_field", "record", None, "an upsert carries the record")
    if record is not None and not isinstance(record, dict):
        raise ContractError("bad_type", "record", record, "expected a JSON object")
    return Envelope(
        kind=kind,
        id=_text(obj, "id"),
        vehicle_id=_text(obj, "vehicle_id"),
        revision=revision,
        retracted=op == "retract",
        record=record,
        reason=_text(obj, "reason", required=False),
        order_id=_text(obj, "order_id", required=False),
    )


def check_id(env: Envelope, record_id: str) -> None:
    if record_id != env.id:
        raise ContractError("bad_value", "id", env.id, f"differs from the record's own id {record_id!r}")
