"""Reading the stream workers' revisioned upserts and retractions (trips, alerts, vehicle state).

PROVISIONAL until issue 10 publishes its envelopes: a record is the v1 record's own JSON object
plus ``revision`` (integer, increasing per id) and ``op`` (``upsert``, the default, or
``retract`` with a ``reason``). Only this module knows that shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fleetwatch.records import ContractError

OPS = ("upsert", "retract")


@dataclass(frozen=True, slots=True)
class Envelope:
    body: dict[str, Any]
    revision: int
    retracted: bool
    reason: str | None


def open_envelope(raw: bytes | None) -> Envelope:
    if raw is None:
        raise ContractError("missing_value", None, None, "record has no value (a tombstone?)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError(
            "malformed_json", None, raw[:80].decode("utf-8", "replace"), f"not valid JSON: {exc}"
        ) from None
    if not isinstance(body, dict):
        raise ContractError("malformed_json", None, body, "expected a JSON object")
    revision = body.pop("revision", None)
    if isinstance(revision, bool) or not isinstance(revision, int) or not 0 <= revision < 2**63:
        raise ContractError("bad_value", "revision", revision, "expected a non-negative 64-bit integer")
    op = body.pop("op", "upsert")
    if op not in OPS:
        raise ContractError("bad_value", "op", op, f"must be one of: {', '.join(OPS)}")
    reason = body.pop("reason", None)
    if reason is not None and not isinstance(reason, str):
        raise ContractError("bad_type", "reason", reason, "expected a string")
    return Envelope(body, revision, op == "retract", reason)
