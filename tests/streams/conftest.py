"""Fixtures for the detection core tests: the hand-made world."""

from __future__ import annotations

from pathlib import Path

import pytest

from geofence import Rules
from tests.streams.world import load_world


@pytest.fixture(scope="session")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Rules:
    directory: Path = tmp_path_factory.mktemp("world")
    return load_world(directory)
