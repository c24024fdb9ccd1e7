"""Paths of the drivers the scheduler's tests use."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent
SIMPLEPOOL = str(HERE.parent / "drivers" / "simplepool.py")
RACYPOOL = str(HERE / "racypool.py")


@pytest.fixture
def simplepool():
    return SIMPLEPOOL


@pytest.fixture
def racypool():
    return RACYPOOL
