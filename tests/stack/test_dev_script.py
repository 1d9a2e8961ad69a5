"""The `dev` entry point: unknown commands fail, and a test run that collects nothing is a failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetwatch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _dev(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "dev"), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_unknown_command_is_an_error() -> None:
    result = _dev("frobnicate")
    assert result.returncode == 2
    assert "usage: ./dev COMMAND" in result.stderr


def test_ci_entry_point_runs_the_test_command() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert text.rstrip().endswith("exec ./dev test")


@pytest.mark.integration
@pytest.mark.slow
def test_a_test_run_that_collects_nothing_fails(stack: Settings) -> None:
    result = _dev("test", "-k", "zzz_no_such_test_zzz", "-p", "no:cacheprovider", "tests/stack")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pytest collected no tests" in result.stderr
