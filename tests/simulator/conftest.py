"""Shared simulator datasets (built once per session: generation is deterministic and fast)."""

from __future__ import annotations

import pytest

from simulator._dataset import Dataset, build_scenarios
from simulator._faults import FaultConfig
from simulator._scenarios import SCENARIOS

FAULTS = FaultConfig(duplicates=0.1, reorder=0.05, late_bursts=2.0, malformed=0.02)


@pytest.fixture(scope="session")
def clean() -> Dataset:
    return build_scenarios(list(SCENARIOS), seed=7)


@pytest.fixture(scope="session")
def faulty() -> Dataset:
    return build_scenarios(list(SCENARIOS), seed=7, faults=FAULTS)
