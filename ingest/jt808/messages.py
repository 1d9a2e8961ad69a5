"""JT/T 808 message bodies the gateway speaks: decoders for what terminals send, encoders for replies.

Terminal -> platform: registration 0x0100, authentication 0x0102, heartbeat 0x0002, logout
0x0003, general response 0x0001, location report 0x0200 and batch upload 0x0704.
Platform -> terminal: general response 0x8001 and registration response 0x8100.
The terminal-side encoders exist for the simulator, the tests and the benchmark.
Decoders raise `FrameError` (code ``truncated`` / ``bad_value`` / ``bad_bcd``) naming the field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ingest.jt808.codec import FrameError, bcd_decode, bcd_encode

TERMINAL_RESPONSE = 0x0001
HEARTBEAT = 0x0002
LOGOUT = 0x0003
REGISTER = 0x0100
AUTHENTICATE = 0x0102
LOCATION = 0x0200
BATCH_LOCATION = 0x0704
PLATFORM_RESPONSE = 0x8001
REGISTER_RESPONSE = 0x8100

#: 0x8001 result byte (JT/T 808-2013 §8.2).
RESULT_OK = 0
RESULT_FAILURE = 1
RESULT_MESSAGE_ERROR = 2
RESULT_NOT_SUPPORTED = 3

#: 0x8100 result byte.
REGISTER_OK = 0
REGISTER_VEHICLE_TAKEN = 1
REGISTER_NO_VEHICLE = 2
REGISTER_TERMINAL_TAKEN = 3
REGISTER_NO_TERMINAL = 4

#: Status word bits used by the mapping (DESIGN §7; JT/T 808-2013 table 24).
STATUS_ACC = 1 << 0
STATUS_POSITIONED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3

#: Terminal clocks report Beijing time (GMT+8) in BCD.
BEIJING = timezone(timedelta(hours=8), "GMT+8")

#: 0x0704 data type byte.
BATCH_NORMAL = 0
BATCH_BLIND_AREA = 1

_LOCATION_BASE = struct.Struct(">IIIIHHH")  # alarm, status, lat, lon, altitude, speed, direction
LOCATION_BASE_SIZE = _LOCATION_BASE.size + 6  # + BCD time


@dataclass(frozen=True, slots=True)
class Location:
    """A decoded location report body (0x0200, or one item of a 0x0704 batch)."""

    alarm: int
    status: int
    lat: float  # signed degrees (status bit 2 = south)
    lon: float  # signed degrees (status bit 3 = west)
    alt_m: int
    speed_kmh: float
    heading: int
    time: datetime  # aware, GMT+8
    mileage_km: float | None = None  # additional item 0x01, 1/10 km
    fuel_l: float | None = None  # 0x02, 1/10 L
    recorder_speed_kmh: float | None = None  # 0x03, 1/10 km/h
    signal: int | None = None  # 0x30
    sats: int | None = None  # 0x31
    #: Every other additional item, raw (id -> value), so nothing a terminal sends is lost.
    extra: dict[int, bytes] = field(default_factory=dict)

    @property
    def acc(self) -> bool:
        return bool(self.status & STATUS_ACC)

    @property
    def positioned(self) -> bool:
        return bool(self.status & STATUS_POSITIONED)


@dataclass(frozen=True, slots=True)
class Batch:
    """A 0x0704 batch upload; ``blind_area`` marks a re-upload of what was stored while offline."""

    blind_area: bool
    locations: list[Location]
    data_type: int = BATCH_NORMAL


@dataclass(frozen=True, slots=True)
class Registration:
    province: int
    city: int
    manufacturer: str
    model: str
    terminal_id: str
    plate_color: int
    plate: str  # the VIN when plate_color is 0 (vehicle without plates)


@dataclass(frozen=True, slots=True)
class Authentication:
    auth_code: str
    imei: str = ""
    software_version: str = ""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _need(body: bytes, size: int, field: str) -> None:
    if len(body) < size:
        raise FrameError("truncated", f"needs {size} bytes, the body has {len(body)}", field=field)


def _text(raw: bytes) -> str:
    """Fixed-width GBK text padded with NULs or spaces (terminals use both)."""
    return raw.rstrip(b"\x00").decode("gbk", "replace").strip()


def _padded(text: str, size: int) -> bytes:
    raw = text.encode("gbk")
    return raw[:size].ljust(size, b"\x00")


def decode_time(raw: bytes, field: str = "time") -> datetime:
    digits = bcd_decode(raw, field)
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=BEIJING,
        )
    except ValueError as exc:
        raise FrameError("bad_value", f"{digits} is not a time YYMMDDhhmmss ({exc})", field=field) from None


def encode_time(when: datetime) -> bytes:
    local = when.astimezone(BEIJING)
    return bcd_encode(local.strftime("%y%m%d%H%M%S"), 6, "time")


# --------------------------------------------------------------------------------------------
# location report 0x0200 and batch 0x0704
# --------------------------------------------------------------------------------------------

#: Known additional items: id -> (expected length, attribute, scale).
_ITEMS: dict[int, tuple[int, str, float]] = {
    0x01: (4, "mileage_km", 0.1),
    0x02: (2, "fuel_l", 0.1),
    0x03: (2, "recorder_speed_kmh", 0.1),
    0x30: (1, "signal", 1),
    0x31: (1, "sats", 1),
}


def decode_location(body: bytes) -> Location:
    _need(body, LOCATION_BASE_SIZE, "location")
    alarm, status, lat_raw, lon_raw, alt, speed, heading = _LOCATION_BASE.unpack_from(body)
    when = decode_time(body[_LOCATION_BASE.size : LOCATION_BASE_SIZE])
    known: dict[str, float | int] = {}
    extra: dict[int, bytes] = {}
    at = LOCATION_BASE_SIZE
    while at < len(body):
        if at + 2 > len(body):
            raise FrameError(
                "truncated", f"additional item header cut at byte {at}", field="additional items"
            )
        item, size = body[at], body[at + 1]
        value = body[at + 2 : at + 2 + size]
        if len(value) < size:
            raise FrameError(
                "truncated",
                f"item 0x{item:02x} says {size} bytes, {len(value)} remain",
                field=f"additional item 0x{item:02x}",
            )
        spec = _ITEMS.get(item)
        if spec is not None and spec[0] == size:
            number = int.from_bytes(value, "big")
            known[spec[1]] = round(number * spec[2], 1) if spec[2] != 1 else number
        else:
            extra[item] = value
        at += 2 + size
    lat = lat_raw / 1e6 * (-1 if status & STATUS_SOUTH else 1)
    lon = lon_raw / 1e6 * (-1 if status & STATUS_WEST else 1)
    return Location(
        alarm=alarm,
        status=status,
        lat=lat,
        lon=lon,
        alt_m=alt - 0x10000 if alt >= 0x8000 else alt,  # some terminals send below-sea-level as int16
        speed_kmh=speed / 10,
        heading=heading,
        time=when,
        extra=extra,
        **known,  # type: ignore[arg-type]
    )


def encode_location(loc: Location) -> bytes:
    status = loc.status & ~(STATUS_SOUTH | STATUS_WEST)
    if loc.lat < 0:
        status |= STATUS_SOUTH
    if loc.lon < 0:
        status |= STATUS_WEST
    out = bytearray(
        _LOCATION_BASE.pack(
            loc.alarm,
            status,
            round(abs(loc.lat) * 1e6),
            round(abs(loc.lon) * 1e6),
            loc.alt_m & 0xFFFF,
            round(loc.speed_kmh * 10),
            loc.heading,
        )
    )
    out += encode_time(loc.time)
    for item, (size, attribute, scale) in _ITEMS.items():
        value = getattr(loc, attribute)
        if value is not None:
            out += bytes((item, size)) + round(value / scale).to_bytes(size, "big")
    for item, value in loc.extra.items():
        out += bytes((item, len(value))) + value
    return bytes(out)


def decode_batch(body: bytes) -> Batch:
    _need(body, 3, "batch header")
    count, data_type = struct.unpack_from(">HB", body)
    at = 3
    locations: list[Location] = []
    for index in range(count):
        if at + 2 > len(body):
            raise FrameError(
                "truncated", f"batch says {count} items, the body ends after {index}", field="batch items"
            )
        (size,) = struct.unpack_from(">H", body, at)
        item = body[at + 2 : at + 2 + size]
        if len(item) < size:
            raise FrameError(
                "truncated", f"item {index} says {size} bytes, {len(item)} remain", field="batch items"
            )
        try:
            locations.append(decode_location(item))
        except FrameError as exc:
            raise FrameError(exc.code, exc.reason, field=f"batch item {index}: {exc.field}") from None
        at += 2 + size
    if at != len(body):
        raise FrameError(
            "length_mismatch", f"{len(body) - at} bytes after the last of {count} items", field="batch items"
        )
    return Batch(data_type == BATCH_BLIND_AREA, locations, data_type)


def encode_batch(locations: list[Location], *, blind_area: bool) -> bytes:
    out = bytearray(struct.pack(">HB", len(locations), BATCH_BLIND_AREA if blind_area else BATCH_NORMAL))
    for loc in locations:
        item = encode_location(loc)
        out += struct.pack(">H", len(item)) + item
    return bytes(out)


# --------------------------------------------------------------------------------------------
# registration 0x0100 / 0x8100 and authentication 0x0102
# --------------------------------------------------------------------------------------------

#: (manufacturer, model, terminal id) widths per edition.
_REG_2019 = (11, 30, 30)
_REG_2013 = (5, 20, 7)
_REG_2011 = (5, 8, 7)


def decode_registration(body: bytes, *, version: int | None) -> Registration:
    if version is not None:
        widths = _REG_2019
    elif len(body) >= 4 + sum(_REG_2013) + 1:
        widths = _REG_2013
    else:
        widths = _REG_2011
    fixed = 4 + sum(widths) + 1
    _need(body, fixed, "registration")
    province, city = struct.unpack_from(">HH", body)
    at = 4
    parts: list[str] = []
    for width in widths:
        parts.append(_text(body[at : at + width]))
        at += width
    return Registration(province, city, parts[0], parts[1], parts[2], body[at], _text(body[at + 1 :]))


def encode_registration(reg: Registration, *, version: int | None) -> bytes:
    widths = _REG_2019 if version is not None else _REG_2013
    out = bytearray(struct.pack(">HH", reg.province, reg.city))
    for text, width in zip((reg.manufacturer, reg.model, reg.terminal_id), widths, strict=True):
        out += _padded(text, width)
    out.append(reg.plate_color)
    out += reg.plate.encode("gbk")
    return bytes(out)


def decode_authentication(body: bytes, *, version: int | None) -> Authentication:
    if version is None:
        return Authentication(_text(body))
    _need(body, 1, "auth code length")
    size = body[0]
    _need(body, 1 + size + 15 + 20, "authentication")
    code = _text(body[1 : 1 + size])
    return Authentication(code, _text(body[1 + size : 16 + size]), _text(body[16 + size : 36 + size]))


def encode_authentication(auth: Authentication, *, version: int | None) -> bytes:
    code = auth.auth_code.encode("gbk")
    if version is None:
        return code
    return bytes((len(code),)) + code + _padded(auth.imei, 15) + _padded(auth.software_version, 20)


def encode_register_response(reply_flow: int, result: int, auth_code: str = "") -> bytes:
    body = struct.pack(">HB", reply_flow, result)
    return body + auth_code.encode("gbk") if result == REGISTER_OK else body


def decode_register_response(body: bytes) -> tuple[int, int, str]:
    _need(body, 3, "registration response")
    flow, result = struct.unpack_from(">HB", body)
    return flow, result, _text(body[3:])


def encode_general_response(reply_flow: int, reply_id: int, result: int) -> bytes:
    return struct.pack(">HHB", reply_flow, reply_id, result)


def decode_general_response(body: bytes) -> tuple[int, int, int]:
    """(reply flow number, reply message id, result) of a 0x8001 or 0x0001."""
    _need(body, 5, "general response")
    flow, msg_id, result = struct.unpack_from(">HHB", body)
    return flow, msg_id, result
