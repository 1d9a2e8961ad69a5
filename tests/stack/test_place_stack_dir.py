"""Where the stack lives when the checkout is out of the service users' reach (e.g. under /root)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from fleetwatch.stack._common import StackError, place_stack_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="relocation only happens as root")


def test_reachable_short_path_is_used_as_is() -> None:
    base = Path(tempfile.mkdtemp(prefix="fw-place-", dir="/tmp"))
    try:
        base.chmod(0o755)
        stack = base / ".stack"
        assert place_stack_dir(stack) == stack
        assert not stack.is_symlink()
    finally:
        shutil.rmtree(base)


def test_private_parent_moves_the_stack_behind_a_symlink(tmp_path: Path) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    stack = private / "checkout" / ".stack"
    target = place_stack_dir(stack)
    try:
        assert stack.is_symlink()
        assert stack.resolve() == target
        assert str(target).startswith("/var/lib/fleetwatch/")
        assert all(p.stat().st_mode & 0o001 for p in target.parents if p != Path("/"))
        (stack / "probe").write_text("x")  # usable through the link
        assert (target / "probe").read_text() == "x"
        assert place_stack_dir(stack) == target  # idempotent
    finally:
        shutil.rmtree(target)


def test_unreachable_stack_with_data_is_an_error_not_a_move(tmp_path: Path) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    stack = private / ".stack"
    stack.mkdir()
    (stack / "data").write_text("precious")
    with pytest.raises(StackError, match="already holds data"):
        place_stack_dir(stack)
    assert (stack / "data").read_text() == "precious"
