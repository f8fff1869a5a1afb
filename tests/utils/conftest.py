"""Fixtures for the utils tests."""
from __future__ import annotations

import pytest
from v0_oracle import load_v0


@pytest.fixture(scope="session")
def v0():
    """XTuner 0.2.0's own modules (see tests/v0_oracle.py); skips when its wheel is unavailable."""
    return load_v0()
