"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import slipway

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["slipway.testing.pytest_postgres"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """'make test' runs the suite against the installed wheel, never the source tree."""
    if os.environ.get("SLIPWAY_TEST_INSTALLED") and "site-packages" not in (slipway.__file__ or ""):
        raise pytest.UsageError(f"expected the installed slipway package, got {slipway.__file__}")


@pytest.fixture
def repo_root() -> Path:
    """The Slipway repository (for examples/)."""
    return REPO
