"""The versioned record contract (fix, order, trip, alert, registration, dead letter) shared by every stage.

Parsing is strict and says exactly what is wrong: a rejected record raises `ContractError`
naming the field, the offending value, a reason sentence and a short `code` that the
dead-letter path counts by. Serialisation is the exact inverse of parsing (round trips).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from fleetwatch.settings import MAX_FUTURE_SECONDS, MAX_SPEED_KMH

FIX_VERSION = 1
ORDER_VERSION = 1
TRIP_VERSION = 1
ALERT_VERSION = 1

#: How long a fleet manager has to handle an alert (DESIGN §1).
ALERT_SLA = timedelta(days=3)

#: Device ids become MQTT usernames and topic levels, so they are restricted to a safe alphabet.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

#: Mainland China's bounding box (lat 3..54 N, lon 73..136 E): used only to tell swapped
#: coordinates from merely distant ones, since every supervised vehicle is inside China.
CHINA_LAT = (3.0, 54.0)
CHINA_LON = (73.0, 136.0)


class ContractError(ValueError):
    """A record that does not meet its contract: which field, which value, why."""

    def __init__(self, code: str, field: str | None, value: Any, reason: str) -> None:
        self.code = code
        self.field = field
        self.value = value
        self.reason = reason
        where = f"field {field!r}" if field else "record"
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{where}: {reason} (got {shown})")

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "reason": self.reason, "message": str(self)}


# --------------------------------------------------------------------------------------------
# field readers: each raises ContractError with the field name
# --------------------------------------------------------------------------------------------

_MISSING = object()


def _get(obj: dict[str, Any], name: str, required: bool = True) -> Any:
    value = obj.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise ContractError("missing_field", name, None, "required field is missing")
        return None
    return value


def _str(obj: dict[str, Any], name: str, required: bool = True, max_len: int = 200) -> Any:
    value = _get(obj, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContractError("bad_type", name, value, f"expected a string, not {type(value).__name__}")
    if not value.strip():
        raise ContractError("bad_value", name, value, "must not be empty")
    if len(value) > max_len:
        raise ContractError("bad_value", name, value, f"longer than {max_len} characters")
    return value


def _number(obj: dict[str, Any], name: str, required: bool = True) -> Any:
    value = _get(obj, name, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError("bad_type", name, value, f"expected a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ContractError("bad_value", name, value, "must be a finite number")
    return float(value)


def _int(obj: dict[str, Any], name: str, required: bool = True) -> Any:
    value = _get(obj, name, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError("bad_type", name, value, f"expected an integer, not {type(value).__name__}")
    return value


def _bool(obj: dict[str, Any], name: str, required: bool = True) -> Any:
    value = _get(obj, name, required)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ContractError("bad_type", name, value, f"expected true or false, not {type(value).__name__}")
    return value


def parse_timestamp(value: Any, name: str = "ts") -> datetime:
    """RFC 3339 with an explicit offset; a naive time is ambiguous evidence and is rejected."""
    if not isinstance(value, str):
        raise ContractError("bad_type", name, value, "expected an RFC 3339 timestamp string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ContractError("bad_timestamp", name, value, "not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ContractError(
            "naive_timestamp", name, value, "timestamp has no UTC offset (write e.g. +08:00)"
        )
    return parsed


def format_timestamp(value: datetime) -> str:
    return value.isoformat()


def _ts(obj: dict[str, Any], name: str, required: bool = True) -> Any:
    value = _get(obj, name, required)
    if value is None:
        return None
    return parse_timestamp(value, name)


def _version(obj: dict[str, Any], expected: int) -> int:
    value = _get(obj, "v")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError("unknown_version", "v", value, f"version must be the integer {expected}")
    if value != expected:
        raise ContractError("unknown_version", "v", value, f"unknown version; this reader speaks v{expected}")
    return value


def _load(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _json_error(raw, exc) from None
    if not isinstance(obj, dict):
        raise ContractError("malformed_json", None, _preview(raw), "expected a JSON object")
    return obj


#: JSON has no NaN or Infinity, but many encoders (Python's json, JavaScript) write them.
_NON_FINITE = re.compile(r"-?(?:NaN|Infinity)")
_FIELD_BEFORE = re.compile(r'"([^"\\]{1,64})"\s*:\s*$')


def _json_error(raw: bytes | str, exc: orjson.JSONDecodeError) -> ContractError:
    """Say what is wrong in terms of the sender's mistake, not the parser's state."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return ContractError(
                "malformed_json", None, raw[:16].hex(" "),
                f"not UTF-8 text: byte 0x{raw[bad.start]:02x} at offset {bad.start} of {len(raw)} "
                "(a fix is JSON in UTF-8; binary or GBK-encoded payloads are refused)",
            )  # fmt: skip
    else:
        text = raw
    start = exc.pos - 1 if text[exc.pos - 1 : exc.pos] == "-" else exc.pos  # orjson points past a sign
    non_finite = _NON_FINITE.match(text, start)
    if non_finite:
        name = _FIELD_BEFORE.search(text, 0, start)
        return ContractError(
            "malformed_json", name.group(1) if name else None, non_finite.group(),
            f"{non_finite.group()} is not a JSON number (JSON has no NaN or Infinity; "
            "leave an unknown value out instead)",
        )  # fmt: skip
    return ContractError(
        "malformed_json", None, _preview(raw),
        f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
    )  # fmt: skip


def _preview(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        return raw[:80].decode("utf-8", "replace")
    return raw[:80]


def _drop_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


# --------------------------------------------------------------------------------------------
# telemetry fix v1
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fix:
    """One position report from a terminal (telemetry fix v1)."""

    device_id: str
    vehicle_id: str
    ts: datetime
    lat: float
    lon: float
    speed_kmh: float
    heading: float
    acc: bool
    seq: int
    odometer_km: float | None = None
    alt_m: float | None = None
    sats: int | None = None
    alarm: int | None = None
    fix_valid: bool | None = None
    v: int = FIX_VERSION

    @property
    def key(self) -> bytes:
        """Kafka key: one vehicle's fixes stay ordered in one partition."""
        return self.vehicle_id.encode("utf-8")

    @property
    def dedup_key(self) -> tuple[str, int]:
        return (self.device_id, self.seq)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "v": self.v,
                "device_id": self.device_id,
                "vehicle_id": self.vehicle_id,
                "ts": format_timestamp(self.ts),
                "lat": self.lat,
                "lon": self.lon,
                "speed_kmh": self.speed_kmh,
                "heading": self.heading,
                "acc": self.acc,
                "seq": self.seq,
                "odometer_km": self.odometer_km,
                "alt_m": self.alt_m,
                "sats": self.sats,
                "alarm": self.alarm,
                "fix_valid": self.fix_valid,
            }
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_fix(
    raw: bytes | str | dict[str, Any],
    *,
    now: datetime | None = None,
    max_future: timedelta = timedelta(seconds=MAX_FUTURE_SECONDS),
    max_speed_kmh: float = MAX_SPEED_KMH,
) -> Fix:
    """Parse and validate a telemetry fix v1; raise `ContractError` saying exactly what is wrong.

    ``now`` is the receiver's clock (defaults to the real clock); fixes stamped more than
    ``max_future`` ahead of it are rejected, because a terminal with a wrong clock would
    otherwise place events in the future and poison event-time windows.
    """
    obj = _load(raw)
    _version(obj, FIX_VERSION)
    device_id = _str(obj, "device_id", max_len=64)
    if not DEVICE_ID_RE.match(device_id):
        raise ContractError(
            "bad_value", "device_id", device_id, "only letters, digits, '_', '-' and '.' are allowed"
        )
    vehicle_id = _str(obj, "vehicle_id", max_len=16)
    ts = _ts(obj, "ts")
    reference = now if now is not None else datetime.now(UTC)
    if ts - reference > max_future:
        raise ContractError(
            "future_timestamp",
            "ts",
            obj["ts"],
            f"more than {int(max_future.total_seconds())} s ahead of the receiver's clock",
        )
    lat = _number(obj, "lat")
    lon = _number(obj, "lon")
    _check_position(lat, lon)
    speed = _number(obj, "speed_kmh")
    if speed < 0:
        raise ContractError("out_of_range", "speed_kmh", speed, "speed cannot be negative")
    if speed > max_speed_kmh:
        raise ContractError(
            "impossible_speed", "speed_kmh", speed, f"faster than {max_speed_kmh:g} km/h is not plausible"
        )
    heading = _number(obj, "heading")
    if not 0 <= heading < 360:
        raise ContractError("out_of_range", "heading", heading, "heading must be in 0..359 degrees")
    acc = _bool(obj, "acc")
    seq = _int(obj, "seq")
    if seq < 0:
        raise ContractError("out_of_range", "seq", seq, "sequence number cannot be negative")
    odometer = _number(obj, "odometer_km", required=False)
    if odometer is not None and odometer < 0:
        raise ContractError("out_of_range", "odometer_km", odometer, "odometer cannot be negative")
    alt = _number(obj, "alt_m", required=False)
    if alt is not None and not -500 <= alt <= 9000:
        raise ContractError("out_of_range", "alt_m", alt, "altitude outside -500..9000 m")
    sats = _int(obj, "sats", required=False)
    if sats is not None and not 0 <= sats <= 200:
        raise ContractError("out_of_range", "sats", sats, "satellite count outside 0..200")
    alarm = _int(obj, "alarm", required=False)
    if alarm is not None and not 0 <= alarm < 2**32:
        raise ContractError("out_of_range", "alarm", alarm, "alarm is a 32-bit JT/T 808 bitmask")
    fix_valid = _bool(obj, "fix_valid", required=False)
    return Fix(
        device_id=device_id,
        vehicle_id=vehicle_id,
        ts=ts,
        lat=lat,
        lon=lon,
        speed_kmh=speed,
        heading=heading,
        acc=acc,
        seq=seq,
        odometer_km=odometer,
        alt_m=alt,
        sats=sats,
        alarm=alarm,
        fix_valid=fix_valid,
    )


def _in_china(lat: float, lon: float) -> bool:
    return CHINA_LAT[0] <= lat <= CHINA_LAT[1] and CHINA_LON[0] <= lon <= CHINA_LON[1]


def _check_position(lat: float, lon: float) -> None:
    if _in_china(lon, lat):
        raise ContractError(
            "swapped_coordinates",
            "lat",
            lat,
            f"lat/lon look swapped: ({lat}, {lon}) is in China only as (lat={lon}, lon={lat})",
        )
    if not -90 <= lat <= 90:
        raise ContractError("out_of_range", "lat", lat, "latitude must be within -90..90")
    if not -180 <= lon <= 180:
        raise ContractError("out_of_range", "lon", lon, "longitude must be within -180..180")
    if lat == 0 and lon == 0:
        raise ContractError("out_of_range", "lat", lat, "(0, 0) is a terminal without a position, not a fix")


# --------------------------------------------------------------------------------------------
# dispatch order (派车单)
# --------------------------------------------------------------------------------------------


class OrderStatus(StrEnum):
    APPROVED = "approved"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class DispatchOrder:
    """An approved (or cancelled) dispatch order for one vehicle and a time span."""

    order_id: str
    vehicle_id: str
    org: str
    start: datetime
    end: datetime
    purpose: str
    destination: str
    status: OrderStatus
    #: GeoJSON geometry (WGS-84) of the approved destination area, if the order names one.
    destination_area: dict[str, Any] | None = None
    v: int = ORDER_VERSION

    def covers(self, start: datetime, end: datetime) -> bool:
        return self.status is OrderStatus.APPROVED and self.start <= start and end <= self.end

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.status is OrderStatus.APPROVED and self.start < end and start < self.end

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "v": self.v,
                "order_id": self.order_id,
                "vehicle_id": self.vehicle_id,
                "org": self.org,
                "start": format_timestamp(self.start),
                "end": format_timestamp(self.end),
                # Absent when empty: the parser refuses empty strings, and a round trip must hold.
                "purpose": self.purpose or None,
                "destination": self.destination or None,
                "destination_area": self.destination_area,
                "status": self.status.value,
            }
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_order(raw: bytes | str | dict[str, Any]) -> DispatchOrder:
    obj = _load(raw)
    _version(obj, ORDER_VERSION)
    start = _ts(obj, "start")
    end = _ts(obj, "end")
    if end <= start:
        raise ContractError("bad_value", "end", obj["end"], "order must end after it starts")
    status_raw = _str(obj, "status")
    try:
        status = OrderStatus(status_raw)
    except ValueError:
        allowed = ", ".join(s.value for s in OrderStatus)
        raise ContractError("bad_value", "status", status_raw, f"must be one of: {allowed}") from None
    area = _destination_area(_get(obj, "destination_area", required=False))
    return DispatchOrder(
        order_id=_str(obj, "order_id", max_len=64),
        vehicle_id=_str(obj, "vehicle_id", max_len=16),
        org=_str(obj, "org", max_len=64),
        start=start,
        end=end,
        purpose=_str(obj, "purpose", required=False) or "",
        destination=_str(obj, "destination", required=False) or "",
        status=status,
        destination_area=area,
    )


_AREA_TYPES = {"Polygon": 3, "MultiPolygon": 4}  # GeoJSON type -> nesting depth of its coordinates


def _destination_area(area: Any) -> dict[str, Any] | None:
    """An order's destination area: a GeoJSON (Multi)Polygon in WGS-84 lon/lat that shapely accepts
    as a valid area (the worker tests positions against it; anything else would fail there)."""
    if area is None:
        return None
    if not isinstance(area, dict) or "type" not in area:
        raise ContractError("bad_type", "destination_area", area, "expected a GeoJSON geometry object")
    depth = _AREA_TYPES.get(area["type"]) if isinstance(area["type"], str) else None
    if depth is None:
        raise ContractError("bad_value", "destination_area", area["type"],
                            "the destination area must be a GeoJSON Polygon or MultiPolygon")  # fmt: skip
    positions = _area_positions(area.get("coordinates"), depth)
    for lon, lat in positions:
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ContractError("out_of_range", "destination_area", [lon, lat],
                                "coordinates are [lon, lat] in WGS-84 degrees")  # fmt: skip
    from shapely.geometry import shape  # only orders with an area pay for the import

    try:
        geometry = shape(area)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:  # shapely's several errors
        raise ContractError("bad_value", "destination_area", area.get("coordinates"),
                            f"not a usable {area['type']}: {exc}") from None  # fmt: skip
    if geometry.is_empty or not geometry.is_valid:
        from shapely.validation import explain_validity

        raise ContractError("bad_value", "destination_area", area.get("coordinates"),
                            f"not a valid area: {explain_validity(geometry)}")  # fmt: skip
    return area


def _area_positions(coords: Any, depth: int) -> list[tuple[float, float]]:
    """Every [lon, lat] of nested coordinate lists exactly ``depth`` deep (numbers only)."""
    if depth == 1:
        if (not isinstance(coords, list) or len(coords) not in (2, 3)
                or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coords)
                or not all(math.isfinite(c) for c in coords)):  # fmt: skip
            raise ContractError("bad_value", "destination_area", coords,
                                "expected a position [lon, lat] of finite numbers")  # fmt: skip
        return [(float(coords[0]), float(coords[1]))]
    if not isinstance(coords, list) or not coords:
        raise ContractError("bad_value", "destination_area", coords,
                            "coordinates must be non-empty nested lists of [lon, lat]")  # fmt: skip
    return [p for item in coords for p in _area_positions(item, depth - 1)]


# --------------------------------------------------------------------------------------------
# trip
# --------------------------------------------------------------------------------------------


def _stable_id(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()[:20]


def _utc_key(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def trip_id_for(vehicle_id: str, start: datetime) -> str:
    """Same vehicle + same start -> same id, so re-running detection never makes a second trip."""
    return _stable_id("trip", vehicle_id, _utc_key(start))


@dataclass(frozen=True, slots=True)
class Trip:
    """A segment of driving between two stops of at least the configured stop duration."""

    trip_id: str
    vehicle_id: str
    org: str
    start: datetime
    end: datetime
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float
    max_speed_kmh: float
    fix_count: int
    order_id: str | None = None
    v: int = TRIP_VERSION

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "v": self.v,
                "trip_id": self.trip_id,
                "vehicle_id": self.vehicle_id,
                "org": self.org,
                "start": format_timestamp(self.start),
                "end": format_timestamp(self.end),
                "start_lat": self.start_lat,
                "start_lon": self.start_lon,
                "end_lat": self.end_lat,
                "end_lon": self.end_lon,
                "distance_m": self.distance_m,
                "max_speed_kmh": self.max_speed_kmh,
                "fix_count": self.fix_count,
                "order_id": self.order_id,
            }
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_trip(raw: bytes | str | dict[str, Any]) -> Trip:
    obj = _load(raw)
    _version(obj, TRIP_VERSION)
    return Trip(
        trip_id=_str(obj, "trip_id"),
        vehicle_id=_str(obj, "vehicle_id", max_len=16),
        org=_str(obj, "org"),
        start=_ts(obj, "start"),
        end=_ts(obj, "end"),
        start_lat=_number(obj, "start_lat"),
        start_lon=_number(obj, "start_lon"),
        end_lat=_number(obj, "end_lat"),
        end_lon=_number(obj, "end_lon"),
        distance_m=_number(obj, "distance_m"),
        max_speed_kmh=_number(obj, "max_speed_kmh"),
        fix_count=_int(obj, "fix_count"),
        order_id=_str(obj, "order_id", required=False),
    )


# --------------------------------------------------------------------------------------------
# alert
# --------------------------------------------------------------------------------------------


class AlertType(StrEnum):
    OFF_HOURS = "off_hours"
    OUT_OF_AREA = "out_of_area"
    PRIVATE_DESTINATION = "private_destination"
    DEPOT_NIGHT = "depot_night"
    OVERSPEED = "overspeed"
    OFFLINE = "offline"
    POWER_CUT = "power_cut"
    NO_ORDER = "no_order"


class Severity(StrEnum):
    """The provinces' 三色预警 grades an alert can carry (green is "no alert")."""

    YELLOW = "yellow"
    RED = "red"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.YELLOW: 1, Severity.RED: 2}


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


def alert_id_for(alert_type: AlertType | str, vehicle_id: str, start: datetime) -> str:
    """Deterministic: the same vehicle + type + start always yields the same alert id."""
    return _stable_id("alert", str(alert_type), vehicle_id, _utc_key(start))


@dataclass(frozen=True, slots=True)
class Alert:
    """A detected violation. `raised_at` is the event time at which it first qualified, stable
    through every update of the same `alert_id` (so `due` never slides); `severity` is optional
    in v1 (absent in alerts written before it existed)."""

    alert_id: str
    type: AlertType
    vehicle_id: str
    org: str
    start: datetime
    end: datetime | None
    lat: float
    lon: float
    raised_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    trip_id: str | None = None
    status: AlertStatus = AlertStatus.OPEN
    severity: Severity | None = None
    v: int = ALERT_VERSION

    @property
    def due(self) -> datetime:
        return self.raised_at + ALERT_SLA

    @classmethod
    def new(
        cls,
        alert_type: AlertType,
        vehicle_id: str,
        org: str,
        start: datetime,
        end: datetime | None,
        lat: float,
        lon: float,
        raised_at: datetime,
        details: dict[str, Any] | None = None,
        trip_id: str | None = None,
        severity: Severity | None = None,
    ) -> Alert:
        return cls(
            alert_id=alert_id_for(alert_type, vehicle_id, start),
            type=alert_type,
            vehicle_id=vehicle_id,
            org=org,
            start=start,
            end=end,
            lat=lat,
            lon=lon,
            raised_at=raised_at,
            details=dict(details or {}),
            trip_id=trip_id,
            severity=severity,
        )

    def with_end(self, end: datetime) -> Alert:
        return replace(self, end=end)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "v": self.v,
                "alert_id": self.alert_id,
                "type": self.type.value,
                "vehicle_id": self.vehicle_id,
                "org": self.org,
                "start": format_timestamp(self.start),
                "end": format_timestamp(self.end) if self.end else None,
                "lat": self.lat,
                "lon": self.lon,
                "raised_at": format_timestamp(self.raised_at),
                "due": format_timestamp(self.due),
                "details": self.details,
                "trip_id": self.trip_id,
                "status": self.status.value,
                "severity": self.severity.value if self.severity else None,
            }
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_alert(raw: bytes | str | dict[str, Any]) -> Alert:
    obj = _load(raw)
    _version(obj, ALERT_VERSION)
    type_raw = _str(obj, "type")
    try:
        alert_type = AlertType(type_raw)
    except ValueError:
        raise ContractError("bad_value", "type", type_raw, "unknown alert type") from None
    status_raw = _str(obj, "status", required=False) or AlertStatus.OPEN.value
    try:
        status = AlertStatus(status_raw)
    except ValueError:
        raise ContractError("bad_value", "status", status_raw, "unknown alert status") from None
    severity_raw = _str(obj, "severity", required=False)
    try:
        severity = Severity(severity_raw) if severity_raw is not None else None
    except ValueError:
        raise ContractError("bad_value", "severity", severity_raw, "must be yellow or red") from None
    details = _get(obj, "details", required=False) or {}
    if not isinstance(details, dict):
        raise ContractError("bad_type", "details", details, "expected a JSON object")
    return Alert(
        alert_id=_str(obj, "alert_id"),
        type=alert_type,
        vehicle_id=_str(obj, "vehicle_id", max_len=16),
        org=_str(obj, "org"),
        start=_ts(obj, "start"),
        end=_ts(obj, "end", required=False),
        lat=_number(obj, "lat"),
        lon=_number(obj, "lon"),
        raised_at=_ts(obj, "raised_at"),
        details=details,
        trip_id=_str(obj, "trip_id", required=False),
        status=status,
        severity=severity,
    )


# --------------------------------------------------------------------------------------------
# worker output envelopes (trips / alerts changes, vehicle state, ops events, dead letters)
# --------------------------------------------------------------------------------------------

CHANGE_VERSION = 1
VEHICLE_STATUS_VERSION = 1
OPS_EVENT_VERSION = 1


CHANGE_KINDS = ("trip", "alert")


class ChangeOp(StrEnum):
    UPSERT = "upsert"  # the record is new or replaces the one with the same id
    RETRACT = "retract"  # the id no longer holds (kept for audit, with the reason)


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a trip or an alert on `fleetwatch.trips.v1` / `fleetwatch.alerts.v1`.

    Keyed by vehicle_id, so one vehicle's changes keep their order in one partition. `revision`
    grows with every change the worker emits for that vehicle: a consumer keeps, per `id`, the
    change with the highest revision (on a tie, the later offset: a restarted worker re-emits
    the same changes with the same revisions). A retraction of an exempted alert carries the
    order that exempted it and the alert as it stood.
    """

    kind: str  # "trip" | "alert"
    op: ChangeOp
    id: str
    vehicle_id: str
    revision: int
    emitted_at: datetime
    record: Trip | Alert | None = None
    reason: str | None = None  # retractions: late_fix | exempted | not_confirmed
    order_id: str | None = None
    v: int = CHANGE_VERSION

    @property
    def retracted(self) -> bool:
        return self.op is ChangeOp.RETRACT

    @property
    def trip(self) -> Trip | None:
        return self.record if isinstance(self.record, Trip) else None

    @property
    def alert(self) -> Alert | None:
        return self.record if isinstance(self.record, Alert) else None

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "v": self.v,
                "kind": self.kind,
                "op": self.op.value,
                "id": self.id,
                "vehicle_id": self.vehicle_id,
                "revision": self.revision,
                "emitted_at": format_timestamp(self.emitted_at),
                "record": self.record.to_dict() if self.record is not None else None,
                "reason": self.reason,
                "order_id": self.order_id,
            }
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_change(raw: bytes | str | dict[str, Any], kind: str | None = None) -> Change:
    """A trip or alert change; ``kind`` (a reader of one topic) refuses the other kind."""
    obj = _load(raw)
    _version(obj, CHANGE_VERSION)
    found_kind = _str(obj, "kind")
    if found_kind not in CHANGE_KINDS:
        raise ContractError("bad_value", "kind", found_kind, "must be trip or alert")
    if kind is not None and found_kind != kind:
        raise ContractError("bad_value", "kind", found_kind, f"this topic carries {kind} changes")
    op_raw = _str(obj, "op")
    try:
        op = ChangeOp(op_raw)
    except ValueError:
        raise ContractError("bad_value", "op", op_raw, "must be upsert or retract") from None
    change_id = _str(obj, "id")
    revision = _int(obj, "revision")
    if not 0 <= revision < 2**63:  # a bigint column in the database
        raise ContractError("bad_value", "revision", revision, "expected a non-negative 64-bit integer")
    record_raw = _get(obj, "record", required=op is ChangeOp.UPSERT)
    record: Trip | Alert | None = None
    if record_raw is not None:
        if not isinstance(record_raw, dict):
            raise ContractError("bad_type", "record", record_raw, "expected a JSON object")
        record = parse_trip(record_raw) if found_kind == "trip" else parse_alert(record_raw)
        own_id = record.trip_id if isinstance(record, Trip) else record.alert_id
        if own_id != change_id:
            raise ContractError("bad_value", "id", change_id, f"differs from the record's own id {own_id!r}")
    return Change(
        kind=found_kind,
        op=op,
        id=change_id,
        vehicle_id=_str(obj, "vehicle_id", max_len=16),
        revision=revision,
        emitted_at=_ts(obj, "emitted_at"),
        record=record,
        reason=_str(obj, "reason", required=False),
        order_id=_str(obj, "order_id", required=False, max_len=64),
    )


class VehicleStatusKind(StrEnum):
    MOVING = "moving"
    PARKED = "parked"
    OFFLINE = "offline"
    ALERTING = "alerting"


@dataclass(frozen=True, slots=True)
class VehicleStatus:
    """The live map's row for one vehicle on the compacted `fleetwatch.vehicle_state.v1`."""

    vehicle_id: str
    org: str
    ts: datetime  # the newest fix's time
    lat: float
    lon: float
    speed_kmh: float
    acc: bool
    status: VehicleStatusKind
    open_alerts: tuple[str, ...]
    updated_at: datetime  # wall clock of the worker that wrote it
    v: int = VEHICLE_STATUS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "vehicle_id": self.vehicle_id,
            "org": self.org,
            "ts": format_timestamp(self.ts),
            "lat": self.lat,
            "lon": self.lon,
            "speed_kmh": self.speed_kmh,
            "acc": self.acc,
            "status": self.status.value,
            "open_alerts": list(self.open_alerts),
            "updated_at": format_timestamp(self.updated_at),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_vehicle_status(raw: bytes | str | dict[str, Any]) -> VehicleStatus:
    obj = _load(raw)
    _version(obj, VEHICLE_STATUS_VERSION)
    status_raw = _str(obj, "status")
    try:
        status = VehicleStatusKind(status_raw)
    except ValueError:
        raise ContractError("bad_value", "status", status_raw, "unknown vehicle status") from None
    open_alerts = _get(obj, "open_alerts", required=False) or []
    if not isinstance(open_alerts, list) or not all(isinstance(a, str) for a in open_alerts):
        raise ContractError("bad_type", "open_alerts", open_alerts, "expected a list of alert ids")
    return VehicleStatus(
        vehicle_id=_str(obj, "vehicle_id", max_len=16),
        org=_str(obj, "org"),
        ts=_ts(obj, "ts"),
        lat=_number(obj, "lat"),
        lon=_number(obj, "lon"),
        speed_kmh=_number(obj, "speed_kmh"),
        acc=_bool(obj, "acc"),
        status=status,
        open_alerts=tuple(open_alerts),
        updated_at=_ts(obj, "updated_at"),
    )


@dataclass(frozen=True, slots=True)
class OpsEvent:
    """An operational event on `fleetwatch.ops.v1`: calendar gaps, fixes beyond the late horizon,
    configuration reloads (accepted or rejected), orders applied, partitions assigned."""

    kind: str
    at: datetime  # wall clock
    worker: str
    vehicle_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    v: int = OPS_EVENT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(
            {
                "v": self.v,
                "kind": self.kind,
                "at": format_timestamp(self.at),
                "worker": self.worker,
                "vehicle_id": self.vehicle_id,
                "detail": self.detail,
            }
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_ops_event(raw: bytes | str | dict[str, Any]) -> OpsEvent:
    obj = _load(raw)
    _version(obj, OPS_EVENT_VERSION)
    detail = _get(obj, "detail", required=False) or {}
    if not isinstance(detail, dict):
        raise ContractError("bad_type", "detail", detail, "expected a JSON object")
    return OpsEvent(
        kind=_str(obj, "kind"),
        at=_ts(obj, "at"),
        worker=_str(obj, "worker"),
        vehicle_id=_str(obj, "vehicle_id", required=False, max_len=16),
        detail=detail,
    )


# --------------------------------------------------------------------------------------------
# device registration v1: the registry's compacted topic (device -> vehicle, org)
# --------------------------------------------------------------------------------------------

DEVICE_REGISTRATION_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeviceRegistration:
    """Which vehicle (and org) a terminal is fitted to, on the compacted `fleetwatch.registry.v1`.

    Keyed by device_id: compaction keeps each device's latest registration; a removed device is a
    tombstone (a record without a value). Secrets never travel here.
    """

    device_id: str
    vehicle_id: str
    org: str
    updated_at: datetime
    v: int = DEVICE_REGISTRATION_VERSION

    @property
    def key(self) -> bytes:
        return self.device_id.encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "device_id": self.device_id,
            "vehicle_id": self.vehicle_id,
            "org": self.org,
            "updated_at": format_timestamp(self.updated_at),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_device_registration(raw: bytes | str | dict[str, Any]) -> DeviceRegistration:
    obj = _load(raw)
    _version(obj, DEVICE_REGISTRATION_VERSION)
    device_id = _str(obj, "device_id", max_len=64)
    if not DEVICE_ID_RE.match(device_id):
        raise ContractError(
            "bad_value", "device_id", device_id, "only letters, digits, '_', '-' and '.' are allowed"
        )
    return DeviceRegistration(
        device_id=device_id,
        vehicle_id=_str(obj, "vehicle_id", max_len=16),
        org=_str(obj, "org"),
        updated_at=_ts(obj, "updated_at"),
    )


# --------------------------------------------------------------------------------------------
# dead letter v2: one record for every stage's dead-letter topic
# --------------------------------------------------------------------------------------------

#: v1 had three shapes (bridge/gateway, worker, sink); v2 is the one shape of all four stages.
DEAD_LETTER_VERSION = 2

#: Refused payloads larger than this are cut before dead-lettering so the letter (base64 grows
#: bytes by 4/3) always fits Kafka's default 1 MiB message; ``truncated`` and ``original_size`` say so.
DEAD_LETTER_KEEP_BYTES = 256 * 1024


class DeadLetterStage(StrEnum):
    BRIDGE = "bridge"
    JT808 = "jt808"
    WORKER = "worker"
    SINK = "sink"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a stage refused a record; mirrors `ContractError` so every refusal reads the same."""

    code: str
    field: str | None
    reason: str
    message: str

    @classmethod
    def from_contract(cls, exc: ContractError) -> Rejection:
        return cls(code=exc.code, field=exc.field, reason=exc.reason, message=str(exc))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A refused record on a dead-letter topic: why (as a `Rejection`), its original bytes (cut at
    `DEAD_LETTER_KEEP_BYTES`), where it came from and which stage instance refused it."""

    code: str
    field: str | None
    reason: str
    message: str
    source_topic: str
    #: When the refusing stage received (and refused) the record.
    received_at: datetime
    payload: bytes
    stage: DeadLetterStage
    instance: str
    #: Size of the record as received; ``payload`` holds only its first bytes when ``truncated``.
    original_size: int
    truncated: bool
    source_partition: int | None = None
    source_offset: int | None = None
    #: Stage-specific facts, e.g. the sink's ``table`` and ``sqlstate``.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    v: int = DEAD_LETTER_VERSION

    @classmethod
    def of(
        cls,
        rejection: Rejection,
        *,
        payload: bytes,
        source_topic: str,
        received_at: datetime,
        stage: DeadLetterStage,
        instance: str,
        source_partition: int | None = None,
        source_offset: int | None = None,
        extra: dict[str, Any] | None = None,
        keep_bytes: int = DEAD_LETTER_KEEP_BYTES,
    ) -> DeadLetter:
        return cls(
            code=rejection.code,
            field=rejection.field,
            reason=rejection.reason,
            message=rejection.message,
            source_topic=source_topic,
            received_at=received_at,
            payload=bytes(payload[:keep_bytes]),
            stage=stage,
            instance=instance,
            original_size=len(payload),
            truncated=len(payload) > keep_bytes,
            source_partition=source_partition,
            source_offset=source_offset,
            extra=extra or {},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "code": self.code,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
            "stage": self.stage.value,
            "instance": self.instance,
            "source_topic": self.source_topic,
            **_drop_none({"source_partition": self.source_partition, "source_offset": self.source_offset}),
            "received_at": format_timestamp(self.received_at),
            "original_size": self.original_size,
            "truncated": self.truncated,
            # base64 because a refused payload need not be UTF-8 or JSON at all.
            "payload_b64": base64.b64encode(self.payload).decode("ascii"),
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def parse_dead_letter(raw: bytes | str | dict[str, Any]) -> DeadLetter:
    """Inverse of `DeadLetter.to_json`, for every stage's letters; also reads the v1 letters of the
    bridge and the JT/T 808 gateway that may still be on the telemetry dead-letter topic."""
    obj = _load(raw)
    v1 = obj.get("v") == 1 and isinstance(obj.get("bridge"), str)
    if v1:
        obj = _dead_letter_from_v1(obj)
    _version(obj, DEAD_LETTER_VERSION)
    encoded = _get(obj, "payload_b64")
    if not isinstance(encoded, str):
        raise ContractError("bad_type", "payload_b64", encoded, "expected a base64 string")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ContractError("bad_value", "payload_b64", encoded[:80], "not valid base64") from None
    # v1 letters from before the two size fields existed always held the whole payload.
    original_size = _int(obj, "original_size", required=not v1)
    original_size = len(payload) if original_size is None else original_size
    if original_size < len(payload):
        raise ContractError("bad_value", "original_size", original_size, "smaller than the kept payload")
    truncated = _bool(obj, "truncated", required=not v1)
    stage = _str(obj, "stage")
    try:
        stage = DeadLetterStage(stage)
    except ValueError:
        known = [s.value for s in DeadLetterStage]
        raise ContractError("bad_value", "stage", stage, f"not one of {known}") from None
    extra = _get(obj, "extra", required=False) or {}
    if not isinstance(extra, dict):
        raise ContractError("bad_type", "extra", extra, "expected a JSON object")
    return DeadLetter(
        code=_str(obj, "code"),
        field=_str(obj, "field", required=False),
        reason=_str(obj, "reason", max_len=DEAD_LETTER_KEEP_BYTES),
        message=_str(obj, "message", max_len=DEAD_LETTER_KEEP_BYTES),
        source_topic=_str(obj, "source_topic", max_len=1000),
        received_at=_ts(obj, "received_at"),
        payload=payload,
        stage=stage,
        instance=_str(obj, "instance"),
        original_size=original_size,
        truncated=bool(truncated),
        source_partition=_int(obj, "source_partition", required=False),
        source_offset=_int(obj, "source_offset", required=False),
        extra=extra,
    )


def _dead_letter_from_v1(obj: dict[str, Any]) -> dict[str, Any]:
    # v1 named the instance ``bridge``; the gateway wrote "jt808-<instance>" there.
    bridge: str = obj["bridge"]
    gateway = bridge.startswith("jt808-")
    stage = DeadLetterStage.JT808 if gateway else DeadLetterStage.BRIDGE
    rest = {k: v for k, v in obj.items() if k != "bridge"}
    return rest | {"v": DEAD_LETTER_VERSION, "stage": stage.value, "instance": bridge.removeprefix("jt808-")}
