"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import slipway

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["tests.support.pytest_postgres"]


#: Tiers whose tests must not be spread over pytest-xdist workers (``make test`` runs ``--dist loadgroup``):
#: the container tests share one podman service and its images per session; the load tests measure
#: request counts and latencies and keep to one worker, so that two of them never compete for the CPU.
XDIST_GROUPS = {
    "containers": "podman",
    "zero_downtime": "load",
    "integration_migrations": "load",
    "routers": "load",
    "rollback": "load",
    "example_flask": "load",
}

#: Tests that use one of these fixtures join its group wherever they live: ``chromium`` (a real browser,
#: heavy on a 2-core machine: one at a time), ``podman_service`` (below).
FIXTURE_GROUPS = {"podman_service": "podman", "chromium": "browser"}


# tryfirst: pytest-xdist reads the xdist_group marks in its own pytest_collection_modifyitems (it appends
# "@group" to each node id, which is what --dist loadgroup schedules by), and its worker plugin is
# registered after this conftest, so without tryfirst it ran first, saw no marks, and every group was
# silently split over both workers (two podman services cleaning each other's containers).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every test of a grouped tier into its xdist group (a no-op without xdist).

    Any test that uses the podman service joins the podman group wherever it lives (the rollout tests run
    over containers too): podman's storage is one per machine, and each session's podman service removes
    the test images and containers when it ends, so two workers must never drive podman at once.
    """
    for item in items:
        parts = item.path.relative_to(REPO / "tests").parts
        group = XDIST_GROUPS.get(parts[0]) if len(parts) > 1 else None
        for fixture, shared in FIXTURE_GROUPS.items():
            if fixture in getattr(item, "fixturenames", ()):
                group = shared
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionstart(session: pytest.Session) -> None:
    """'make test' runs the suite against the installed wheel, never the source tree."""
    if os.environ.get("SLIPWAY_TEST_INSTALLED") and "site-packages" not in (slipway.__file__ or ""):
        raise pytest.UsageError(f"expected the installed slipway package, got {slipway.__file__}")


@pytest.fixture
def repo_root() -> Path:
    """The Slipway repository (for examples/)."""
    return REPO
