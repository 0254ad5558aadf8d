"""Fixtures: the OpenSSH test bed, a real PostgreSQL (tests/conftest.py), and the Flask example's wheels."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.init.wheelhouse import make_wheelhouse
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)

#: What the example's requirements.txt names, and release 2's new dependency: the mirror serves them.
PACKAGES = ["flask", "gunicorn", "sqlalchemy", "alembic", "psycopg", "psycopg-binary", "prometheus-client"]


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package mirror in a directory: wheels of the example's dependencies, made offline."""
    return make_wheelhouse(tmp_path_factory.mktemp("mirror"), PACKAGES)
