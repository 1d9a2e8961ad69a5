"""Fuzzing the JT/T 808 decoding path (split, frame, reassembly, bodies, mapping to fix v1)."""

from __future__ import annotations

from tests.fuzzing import assert_no_crash


def test_jt808_streams_never_crash() -> None:
    assert_no_crash("jt808", cases=400, seed_value=15)
