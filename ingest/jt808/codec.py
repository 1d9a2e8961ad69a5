"""JT/T 808 framing: 0x7e delimiters, 0x7d escapes, the XOR check code and the message header.

Covers the 2013 edition (6-byte BCD terminal phone number) and the 2019 edition (version
flag bit 14 in the body properties, a protocol-version byte and a 10-byte BCD number).
Everything that can be wrong with a frame raises `FrameError` with a short code, the field
and a sentence; it never raises anything else, whatever bytes arrive.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import reduce
from operator import xor

FLAG = 0x7E
ESCAPE = 0x7D

#: Body properties bits (JT/T 808-2013 table 3; bit 14 is the 2019 version flag).
BODY_LENGTH_MASK = 0x03FF
ENCRYPTION_SHIFT = 10
ENCRYPTION_MASK = 0x7
SUBPACKAGE_BIT = 1 << 13
VERSION_BIT = 1 << 14

MAX_BODY = BODY_LENGTH_MASK
#: The longest possible unescaped frame: 2019 header with package items, body, check code.
MAX_FRAME = 2 + 2 + 1 + 10 + 2 + 4 + MAX_BODY + 1

PHONE_BYTES_2013 = 6
PHONE_BYTES_2019 = 10


class FrameError(ValueError):
    """A frame the gateway cannot accept: ``code`` (counted, dead-lettered), ``field``, ``reason``.

    ``header`` is set when the header itself was readable, so the gateway can still answer
    the terminal with a general response naming the flow number it rejected.
    """

    def __init__(self, code: str, reason: str, *, field: str | None = None, header: Header | None = None):
        self.code = code
        self.field = field
        self.reason = reason
        self.header = header
        super().__init__(f"{field}: {reason}" if field else reason)


@dataclass(frozen=True, slots=True)
class Header:
    """The message header; ``version`` is None for 2013 (and 2011) frames, else the 2019 version byte."""

    msg_id: int
    phone: str
    flow: int
    body_length: int = 0
    encryption: int = 0
    version: int | None = None
    package_total: int = 0
    package_index: int = 0

    @property
    def subpackage(self) -> bool:
        return self.package_total > 0

    @property
    def size(self) -> int:
        fixed = 2 + 2 + (1 + PHONE_BYTES_2019 if self.version is not None else PHONE_BYTES_2013) + 2
        return fixed + (4 if self.subpackage else 0)


@dataclass(frozen=True, slots=True)
class Frame:
    header: Header
    body: bytes


# --------------------------------------------------------------------------------------------
# escapes and check code
# --------------------------------------------------------------------------------------------


def escape(data: bytes) -> bytes:
    """0x7d -> 0x7d 0x01 first, then 0x7e -> 0x7d 0x02 (the order matters)."""
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """Inverse of `escape`; a 0x7d not followed by 0x01 or 0x02 (or a stray 0x7e) is an error."""
    if b"\x7e" in data:
        raise FrameError("bad_escape", f"unescaped 0x7e at byte {data.index(FLAG)} inside a frame")
    if b"\x7d" not in data:
        return data
    out = bytearray()
    start = 0
    while True:
        at = data.find(b"\x7d", start)
        if at < 0:
            out += data[start:]
            return bytes(out)
        if at + 1 >= len(data):
            raise FrameError(
                "bad_escape", f"0x7d at byte {at} ends the frame (escape without its second byte)"
            )
        follower = data[at + 1]
        if follower not in (0x01, 0x02):
            raise FrameError("bad_escape", f"0x7d at byte {at} followed by 0x{follower:02x} (only 01 or 02)")
        out += data[start:at]
        out.append(0x7D if follower == 0x01 else 0x7E)
        start = at + 2


def check_code(data: bytes | bytearray) -> int:
    """XOR of every byte from the message header to the end of the body."""
    return reduce(xor, data, 0)


# --------------------------------------------------------------------------------------------
# BCD
# --------------------------------------------------------------------------------------------


def bcd_decode(data: bytes, field: str) -> str:
    text = data.hex()
    if not text.isdigit():
        raise FrameError("bad_bcd", f"BCD digits expected, got {text}", field=field)
    return text


def bcd_encode(digits: str, size: int, field: str) -> bytes:
    if not digits.isdigit() or len(digits) > size * 2:
        raise FrameError("bad_bcd", f"{digits!r} is not at most {size * 2} decimal digits", field=field)
    return bytes.fromhex(digits.zfill(size * 2))


def normalise_phone(digits: str) -> str:
    """One id per terminal whichever edition it speaks: the BCD number without its leading zeros."""
    return digits.lstrip("0") or "0"


# --------------------------------------------------------------------------------------------
# header and frame
# --------------------------------------------------------------------------------------------


def parse_header(data: bytes) -> Header:
    """Read the header at the start of an unescaped frame (no check code verification here)."""
    if len(data) < 4:
        raise FrameError("truncated", f"{len(data)} bytes cannot hold a message header", field="header")
    msg_id, props = struct.unpack_from(">HH", data)
    at = 4
    version: int | None = None
    phone_size = PHONE_BYTES_2013
    if props & VERSION_BIT:
        version = data[at] if len(data) > at else 0
        at += 1
        phone_size = PHONE_BYTES_2019
    subpackage = bool(props & SUBPACKAGE_BIT)
    need = at + phone_size + 2 + (4 if subpackage else 0)
    if len(data) < need:
        raise FrameError("truncated", f"{len(data)} bytes, the header alone needs {need}", field="header")
    phone = normalise_phone(bcd_decode(data[at : at + phone_size], "phone"))
    at += phone_size
    (flow,) = struct.unpack_from(">H", data, at)
    total = index = 0
    if subpackage:
        total, index = struct.unpack_from(">HH", data, at + 2)
    return Header(
        msg_id=msg_id,
        phone=phone,
        flow=flow,
        body_length=props & BODY_LENGTH_MASK,
        encryption=(props >> ENCRYPTION_SHIFT) & ENCRYPTION_MASK,
        version=version,
        package_total=total if subpackage else 0,
        package_index=index,
    )


def decode_frame(content: bytes) -> Frame:
    """Decode the escaped bytes between two 0x7e flags into a checked `Frame`."""
    data = unescape(content)
    if len(data) > MAX_FRAME:
        raise FrameError("oversized_frame", f"{len(data)} bytes, the standard allows at most {MAX_FRAME}")
    if len(data) < 2:
        raise FrameError("truncated", f"a {len(data)}-byte frame has no header", field="header")
    header: Header | None
    try:
        header = parse_header(data[:-1])
    except FrameError:
        header = None
    expected, got = check_code(data[:-1]), data[-1]
    if expected != got:
        raise FrameError(
            "bad_check_code",
            f"check code 0x{got:02x} in the frame, 0x{expected:02x} computed",
            field="check_code",
            header=header,
        )
    if header is None:
        parse_header(data[:-1])  # raises the precise header error
        raise AssertionError("unreachable")
    if header.subpackage and header.package_total and not 1 <= header.package_index <= header.package_total:
        raise FrameError(
            "bad_value",
            f"package {header.package_index} of {header.package_total}",
            field="package_index",
            header=header,
        )
    body = data[header.size : -1]
    if len(body) != header.body_length:
        code = "truncated" if len(body) < header.body_length else "length_mismatch"
        raise FrameError(
            code,
            f"body properties say {header.body_length} bytes, the frame carries {len(body)}",
            field="body",
            header=header,
        )
    return Frame(header, body)


def encode_frame(header: Header, body: bytes) -> bytes:
    """A complete frame, flags included; the body length in ``header`` is taken from ``body``."""
    if len(body) > MAX_BODY:
        raise FrameError("oversized_frame", f"{len(body)}-byte body, at most {MAX_BODY}", field="body")
    props = len(body) | (header.encryption & ENCRYPTION_MASK) << ENCRYPTION_SHIFT
    if header.subpackage:
        props |= SUBPACKAGE_BIT
    out = bytearray(struct.pack(">HH", header.msg_id, 0))
    if header.version is not None:
        props |= VERSION_BIT
        out.append(header.version & 0xFF)
        out += bcd_encode(header.phone, PHONE_BYTES_2019, "phone")
    else:
        out += bcd_encode(header.phone, PHONE_BYTES_2013, "phone")
    struct.pack_into(">H", out, 2, props)
    out += struct.pack(">H", header.flow & 0xFFFF)
    if header.subpackage:
        out += struct.pack(">HH", header.package_total, header.package_index)
    out += body
    out.append(check_code(out))
    return b"\x7e" + escape(bytes(out)) + b"\x7e"


# --------------------------------------------------------------------------------------------
# stream splitting
# --------------------------------------------------------------------------------------------


class FrameSplitter:
    """Cuts a TCP byte stream into frame contents (the escaped bytes between 0x7e flags).

    Bytes that never reach a closing flag within ``max_pending`` are returned as an
    oversized chunk (to be dead-lettered), so a terminal that never sends a flag cannot make
    the gateway buffer without bound.
    """

    def __init__(self, max_pending: int = 2 * MAX_FRAME + 2) -> None:
        self._pending = bytearray()
        self.max_pending = max_pending

    def feed(self, data: bytes) -> tuple[list[bytes], bytes | None]:
        """Return (complete frame contents in order, an over-long unterminated chunk or None)."""
        self._pending += data
        frames: list[bytes] = []
        start = 0
        pending = self._pending
        while True:
            end = pending.find(FLAG, start)
            if end < 0:
                break
            if end > start:
                frames.append(bytes(pending[start:end]))
            start = end + 1
        del pending[:start]
        overflow: bytes | None = None
        if len(pending) > self.max_pending:
            overflow = bytes(pending)
            pending.clear()
        return frames, overflow

    @property
    def pending(self) -> int:
        return len(self._pending)
