"""Decide whether one MQTT message is a valid fix from the device it claims to be from."""

from __future__ import annotations

import csv
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from fleetwatch.records import ContractError, Fix, Rejection, parse_fix

#: Identity rejection codes (counted and written to the dead-letter topic like contract codes).
BAD_TOPIC = "bad_topic"
TOPIC_DEVICE_MISMATCH = "topic_device_mismatch"
UNKNOWN_DEVICE = "unknown_device"
VEHICLE_MISMATCH = "vehicle_mismatch"
TOO_LARGE = "too_large"


class Registry:
    """The device -> vehicle table (`registry.csv`), re-read whenever the file changes.

    The broker's ACL already ties each telemetry topic to one device account; the registry
    adds the second half of the identity: which vehicle that terminal is installed in.
    """

    def __init__(self, path: Path, *, check_interval_s: float = 1.0) -> None:
        self.path = path
        self._check_interval_s = check_interval_s
        self._lock = threading.Lock()
        self._vehicles: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self.reload_count = 0
        self._refresh(force=True)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < self._check_interval_s:
            return  # the common case, once per fix: no lock
        with self._lock:
            if not force and now - self._checked_at < self._check_interval_s:
                return
            self._checked_at = now
            stamp = self._file_stamp()
            if stamp == self._stamp and not force:
                return
            self._vehicles = _read_registry(self.path) if stamp is not None else {}
            self._stamp = stamp
            self.reload_count += 1

    def vehicle_of(self, device_id: str) -> str | None:
        """The registered vehicle of ``device_id``; an unknown device forces a re-check of the file."""
        self._refresh()
        vehicle = self._vehicles.get(device_id)
        if vehicle is None:
            # A device registered a moment ago must not be dead-lettered for a stale cache.
            self._checked_at = float("-inf")
            self._refresh()
            vehicle = self._vehicles.get(device_id)
        return vehicle

    def __len__(self) -> int:
        return len(self._vehicles)


def _read_registry(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"device_id", "vehicle_id"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: registry header lacks {sorted(missing)} (got {reader.fieldnames})")
        return {row["device_id"].strip(): row["vehicle_id"].strip() for row in reader if row["device_id"]}


def topic_device(topic: str, prefix: str) -> str | None:
    """The device id a telemetry topic names (its single level after ``prefix``), else None."""
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    rest = topic[len(head) :]
    if not rest or "/" in rest:
        return None
    return rest


def check_fix(
    payload: bytes,
    topic: str,
    *,
    registry: Registry,
    topic_prefix: str,
    now: datetime,
    max_future: timedelta,
    max_speed_kmh: float,
    max_payload_bytes: int,
) -> Fix | Rejection:
    """Parse ``payload`` against the v1 contract and check that its identity matches its sender."""
    sender = topic_device(topic, topic_prefix)
    if sender is None:
        return Rejection(
            BAD_TOPIC, None, "not a telemetry topic", f"topic {topic!r} is not {topic_prefix}/<device_id>"
        )
    if len(payload) > max_payload_bytes:
        # Checked before parsing: a fix is ~250 bytes, and megabytes of JSON cost real time.
        return Rejection(
            TOO_LARGE,
            None,
            f"payload over the bridge's {max_payload_bytes}-byte limit",
            f"payload of {len(payload)} bytes is over the {max_payload_bytes}-byte limit "
            "(FLEETWATCH_INGEST_MAX_PAYLOAD_BYTES; a fix is a few hundred bytes)",
        )
    try:
        fix = parse_fix(payload, now=now, max_future=max_future, max_speed_kmh=max_speed_kmh)
    except ContractError as exc:
        return Rejection.from_contract(exc)
    if fix.device_id != sender:
        return Rejection(
            TOPIC_DEVICE_MISMATCH,
            "device_id",
            "device_id differs from the account that published it",
            f"field 'device_id' says {fix.device_id!r} but the message came from device {sender!r} "
            f"(topic {topic})",
        )
    registered = registry.vehicle_of(sender)
    if registered is None:
        return Rejection(
            UNKNOWN_DEVICE,
            "device_id",
            "device is not in the vehicle registry",
            f"field 'device_id': {sender!r} is not registered in {registry.path}",
        )
    if fix.vehicle_id != registered:
        return Rejection(
            VEHICLE_MISMATCH,
            "vehicle_id",
            "vehicle_id differs from the registry",
            f"field 'vehicle_id' says {fix.vehicle_id!r} but device {sender!r} is registered to "
            f"vehicle {registered!r}",
        )
    return fix
