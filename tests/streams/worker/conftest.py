"""Fixtures shared by the worker's integration tests: settings and a private `Bench`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.settings import Settings
from tests.streams.worker.harness import Bench


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def bench(settings: Settings, tmp_path: Path) -> Iterator[Bench]:
    b = Bench(settings, tmp_path, uuid.uuid4().hex[:10])
    yield b
    b.stop_all()
