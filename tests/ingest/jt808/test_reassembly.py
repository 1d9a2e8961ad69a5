"""Sub-package reassembly: any arrival order, separate messages apart, incomplete ones handed back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.jt808.codec import Header
from ingest.jt808.reassembly import Reassembler


def _parts(first_flow: int, chunks: list[bytes]) -> list[tuple[Header, bytes]]:
    total = len(chunks)
    return [
        (Header(0x0704, "1", (first_flow + i) & 0xFFFF, package_total=total, package_index=i + 1), chunk)
        for i, chunk in enumerate(chunks)
    ]


@given(
    st.lists(st.binary(min_size=1, max_size=30), min_size=2, max_size=6), st.integers(0, 0xFFFF), st.randoms()
)
def test_any_order_reassembles(chunks: list[bytes], first_flow: int, rnd: object) -> None:
    parts = _parts(first_flow, chunks)
    rnd.shuffle(parts)  # type: ignore[attr-defined]
    r = Reassembler()
    results = [r.add(h, b, b"raw", 0.0) for h, b in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    assert results[-1] == b"".join(chunks) and len(r) == 0


def test_two_messages_do_not_mix_and_stale_parts_come_back() -> None:
    r = Reassembler(timeout_s=10)
    a = _parts(100, [b"a1", b"a2"])
    b = _parts(200, [b"b1", b"b2", b"b3"])
    assert r.add(*a[0], b"A1", 0.0) is None
    assert r.add(*b[0], b"B1", 5.0) is None
    assert r.add(*a[1], b"A2", 6.0) == b"a1a2"
    assert r.expire(12.0) == []
    assert r.expire(16.0) == [((0x0704, 3, 200), [b"B1"])]
    assert len(r) == 0
