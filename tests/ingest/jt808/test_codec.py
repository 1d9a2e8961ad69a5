"""Framing, escapes, check code and header: published frames plus property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.jt808.codec import (
    FrameError,
    FrameSplitter,
    Header,
    check_code,
    decode_frame,
    encode_frame,
    escape,
    unescape,
)
from tests.ingest.jt808 import frames as published


def test_standard_escape_example() -> None:
    assert escape(published.STANDARD_ESCAPE_PLAIN) == published.STANDARD_ESCAPE_WIRE
    assert unescape(published.STANDARD_ESCAPE_WIRE) == published.STANDARD_ESCAPE_PLAIN


@pytest.mark.parametrize(
    ("wire", "msg_id", "phone", "flow", "version"),
    [
        (published.HUABAO_0200, 0x0200, "2002604323", 0x00A4, None),
        (published.HUABAO_0102, 0x0102, "2002604325", 1, None),
        (published.HUABAO_8001, 0x8001, "2002604323", 9, None),
        (published.TRACCAR_0704_BLIND_2013, 0x0704, "14450376202", 2, None),
        (published.TRACCAR_0704_2019, 0x0704, "866496077582164", 0x881D, 1),
        (published.TRACCAR_0100_2019, 0x0100, "866496077582164", 0x5218, 1),
        (published.TRACCAR_0002, 0x0002, "43048325465", 0xB7, None),
    ],
)
def test_published_headers(wire: bytes, msg_id: int, phone: str, flow: int, version: int | None) -> None:
    frame = decode_frame(wire[1:-1])
    assert (frame.header.msg_id, frame.header.phone, frame.header.flow) == (msg_id, phone, flow)
    assert frame.header.version == version
    assert len(frame.body) == frame.header.body_length
    # Our encoder rebuilds the identical bytes (BCD padding and check code included).
    padded = Header(msg_id, phone, flow, version=version)
    assert encode_frame(padded, frame.body) == wire


def test_published_capture_with_a_bad_check_code_is_refused_with_its_header() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(published.TRACCAR_0200_BAD_CHECK[1:-1])
    assert info.value.code == "bad_check_code"
    assert "0xd0" in info.value.reason and "0xf0" in info.value.reason
    assert info.value.header is not None and info.value.header.flow == 7  # still answerable


def test_published_capture_with_a_non_bcd_phone_is_refused() -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(published.TRACCAR_0102_NOT_BCD[1:-1])
    assert (info.value.code, info.value.field) == ("bad_bcd", "phone")


def test_bad_escape_names_the_byte() -> None:
    wire = encode_frame(Header(0x0002, "13912345678", 5), b"")[1:-1]
    broken = wire[:3] + b"\x7d\x03" + wire[3:]
    with pytest.raises(FrameError) as info:
        decode_frame(broken)
    assert info.value.code == "bad_escape" and "0x03" in info.value.reason


def test_truncated_body_is_named() -> None:
    wire = bytearray(unescape(encode_frame(Header(0x0200, "13912345678", 5), bytes(28))[1:-1]))
    del wire[-5:-1]  # cut four body bytes, keep (and fix) the check code
    wire[-1] = check_code(wire[:-1])
    with pytest.raises(FrameError) as info:
        decode_frame(escape(bytes(wire)))
    assert info.value.code == "truncated" and info.value.field == "body"
    assert info.value.header is not None


def test_subpackage_header_round_trip() -> None:
    header = Header(0x0704, "13912345678", 77, package_total=3, package_index=2)
    frame = decode_frame(encode_frame(header, b"abc")[1:-1])
    assert (frame.header.package_total, frame.header.package_index, frame.body) == (3, 2, b"abc")


def test_splitter_handles_shared_flags_partial_reads_and_garbage() -> None:
    one = encode_frame(Header(0x0002, "1", 1), b"")
    two = encode_frame(Header(0x0002, "1", 2), b"")
    splitter = FrameSplitter()
    stream = one + two[:-1] + two[-1:] + b"\x01\x02"
    got: list[bytes] = []
    for i in range(0, len(stream), 3):
        frames, overflow = splitter.feed(stream[i : i + 3])
        assert overflow is None
        got += frames
    assert got == [one[1:-1], two[1:-1]]
    assert splitter.pending == 2  # the trailing garbage waits for a flag, it is not dropped silently


def test_splitter_bounds_an_endless_frame() -> None:
    splitter = FrameSplitter(max_pending=100)
    frames, overflow = splitter.feed(b"\x7e" + b"\x11" * 150)
    assert frames == [] and overflow is not None and len(overflow) == 150


# ------------------------------------------------------------------------------ properties

phones = st.integers(0, 10**12 - 1).map(str)
headers = st.builds(
    Header,
    msg_id=st.integers(0, 0xFFFF),
    phone=phones,
    flow=st.integers(0, 0xFFFF),
    version=st.none() | st.integers(0, 255),
    package_total=st.integers(0, 5),
    package_index=st.integers(1, 5),
).filter(lambda h: h.package_index <= h.package_total or h.package_total == 0)


@given(st.binary(max_size=400))
def test_escape_round_trip(data: bytes) -> None:
    wire = escape(data)
    assert b"\x7e" not in wire
    assert unescape(wire) == data


@given(headers, st.binary(max_size=1023))
@settings(max_examples=200)
def test_frame_round_trip(header: Header, body: bytes) -> None:
    wire = encode_frame(header, body)
    assert wire[0] == wire[-1] == 0x7E and b"\x7e" not in wire[1:-1]
    frame = decode_frame(wire[1:-1])
    assert frame.body == body
    assert frame.header.msg_id == header.msg_id and frame.header.flow == header.flow
    assert frame.header.phone == (header.phone.lstrip("0") or "0")
    assert frame.header.version == header.version
    assert frame.header.package_total == header.package_total


@given(st.binary(max_size=2200))
@settings(max_examples=500)
def test_arbitrary_bytes_raise_only_frame_errors(data: bytes) -> None:
    try:
        decode_frame(data)
    except FrameError as exc:
        assert exc.code and exc.reason


@given(headers, st.binary(max_size=200), st.integers(0, 10**6), st.integers(1, 255))
def test_any_single_byte_corruption_is_caught(header: Header, body: bytes, where: int, flip: int) -> None:
    plain = bytearray(unescape(encode_frame(header, body)[1:-1]))
    plain[where % len(plain)] ^= flip
    with pytest.raises(FrameError):
        decode_frame(escape(bytes(plain)))
