"""Dead letters of the sink: a record it could not store, its original bytes and the reason."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from sink.base import Record

#: Kafka's default message limit is 1 MiB and base64 grows bytes by 4/3: keep the letter well under.
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    table: str
    code: str
    field: str | None
    reason: str
    message: str
    #: SQLSTATE when the database refused the record, else None (the record failed its contract).
    sqlstate: str | None = None

    def to_json(self) -> bytes:
        payload = self.record.value or b""
        kept = payload[:MAX_PAYLOAD_BYTES]
        letter: dict[str, Any] = {
            "v": 1,
            "code": self.code,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
            "sqlstate": self.sqlstate,
            "table": self.table,
            "source_topic": self.record.topic,
            "source_partition": self.record.partition,
            "source_offset": self.record.offset,
            "failed_at": datetime.now(UTC).isoformat(),
            "original_size": len(payload),
            "truncated": len(kept) < len(payload),
            "payload_b64": base64.b64encode(kept).decode("ascii"),
        }
        return orjson.dumps(letter)


def parse_dead_letter(raw: bytes) -> dict[str, Any]:
    """A sink dead letter as a dict, with ``payload`` (the original bytes, possibly truncated)."""
    letter: dict[str, Any] = orjson.loads(raw)
    letter["payload"] = base64.b64decode(letter["payload_b64"])
    return letter
