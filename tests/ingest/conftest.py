"""Bridge subprocesses started by a test are always stopped at its end, even when it fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.helpers import BridgeProcess


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    started: list[BridgeProcess] = []

    def make(name: str, **kwargs: Any) -> BridgeProcess:
        bridge = BridgeProcess(tmp_path / f"{name}.log", instance=name, share_group=name, **kwargs)
        started.append(bridge)
        return bridge

    yield make
    for bridge in started:
        bridge.ensure_stopped()
