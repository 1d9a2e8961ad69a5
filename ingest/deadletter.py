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

#: Rejected payloads larger than this are cut before dead-lettering so the DLQ record always fits
#: in a Kafka request (the broker admits MQTT packets up to 1 MiB); the record says so in
#: ``truncated`` and ``original_size``.
KEEP_BYTES = 256 * 1024


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
    #: Size of the message as received; ``payload`` holds its first ``KEEP_BYTES`` when ``truncated``.
    original_size: int
    truncated: bool
    v: int = DEAD_LETTER_VERSION

    @classmethod
    def of(
        cls,
        rejection: Rejection,
        *,
        payload: bytes,
        source_topic: str,
        received_at: datetime,
        bridge: str,
        keep_bytes: int = KEEP_BYTES,
    ) -> DeadLetter:
        return cls(
            code=rejection.code,
            field=rejection.field,
            reason=rejection.reason,
            message=rejection.message,
            source_topic=source_topic,
            received_at=received_at,
            payload=payload[:keep_bytes],
            bridge=bridge,
            original_size=len(payload),
            truncated=len(payload) > keep_bytes,
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
            "original_size": self.original_size,
            "truncated": self.truncated,
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
    # Letters written before these two fields existed always held the whole payload.
    original_size = obj.get("original_size", len(payload))
    truncated = obj.get("truncated", False)
    if isinstance(original_size, bool) or not isinstance(original_size, int) or original_size < len(payload):
        raise ContractError("bad_value", "original_size", original_size, "must be an int >= the kept size")
    if not isinstance(truncated, bool):
        raise ContractError("bad_type", "truncated", truncated, "expected true or false")
    return DeadLetter(
        code=obj["code"],
        field=obj.get("field"),
        reason=obj["reason"],
        message=obj["message"],
        source_topic=obj["source_topic"],
        received_at=parse_timestamp(obj["received_at"], "received_at"),
        payload=payload,
        bridge=obj["bridge"],
        original_size=original_size,
        truncated=truncated,
    )
