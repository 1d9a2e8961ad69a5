"""Fuzzing the MQTT fix parser and identity check: every payload is a fix or a specific rejection."""

from __future__ import annotations

from tests.fuzzing import assert_no_crash


def test_fix_payloads_never_crash() -> None:
    assert_no_crash("fix", cases=400, seed_value=15)
