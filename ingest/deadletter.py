"""The dead-letter record: a rejected message's original bytes, why it was rejected, where from."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from fleetwatch.records import ContractError, format_timestamp, parse_timestamp
from ingest.validate import Rejection

DEAD_LETTER_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected MQTT message as written to the dead-letter topic (keyed by the topic's device)."""

    code: str
    field: str | None
    reason: str
    message: str
    source_topic: str
    received_at: datetime
    payload: bytes
    bridge: str
    v: int = DEAD_LETTER_VERSION

    @classmethod
    def of(
        cls, rejection: Rejection, *, payload: bytes, source_topic: str, received_at: datetime, bridge: str
    ) -> DeadLetter:
        return cls(
            code=rejection.code,
            field=rejection.field,
            reason=rejection.reason,
            message=rejection.message,
            source_topic=source_topic,
            received_at=received_at,
            payload=payload,
            bridge=bridge,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "code": self.code,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
            "source_topic": self.source_topic,
            "received_at": format_timestamp(self.received_at),
            # base64 because a rejected payload need not be UTF-8 or JSON at all.
            "payload_b64": base64.b64encode(self.payload).decode("ascii"),
            "bridge": self.bridge,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_dead_letter(raw: bytes | str) -> DeadLetter:
    """Inverse of `DeadLetter.to_json`; raises `ContractError` naming the bad field."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ContractError("malformed_json", None, raw[:80], f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ContractError("malformed_json", None, raw[:80], "expected a JSON object")
    if obj.get("v") != DEAD_LETTER_VERSION:
        raise ContractError(
            "unknown_version", "v", obj.get("v"), f"this reader speaks v{DEAD_LETTER_VERSION}"
        )
    for name in ("code", "reason", "message", "source_topic", "received_at", "payload_b64", "bridge"):
        if not isinstance(obj.get(name), str):
            raise ContractError("missing_field", name, obj.get(name), "required string field is missing")
    try:
        payload = base64.b64decode(obj["payload_b64"], validate=True)
    except (binascii.Error, ValueError):
        raise ContractError("bad_value", "payload_b64", obj["payload_b64"], "not valid base64") from None
    return DeadLetter(
        code=obj["code"],
        field=obj.get("field"),
        reason=obj["reason"],
        message=obj["message"],
        source_topic=obj["source_topic"],
        received_at=parse_timestamp(obj["received_at"], "received_at"),
        payload=payload,
        bridge=obj["bridge"],
    )
