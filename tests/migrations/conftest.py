"""Fixtures for the migration tests: SQLite and real PostgreSQL databases, migration builders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from migrations_support import Database, MakeMigration
from tests.support.pytest_postgres import postgres_server, postgres_url  # noqa: F401

from slipway.migrations import Migration, parse_migration


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file of this test's own."""
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def make() -> MakeMigration:
    """Build a Migration from version, phase and SQL, as if read from ``NNNN_<phase>_<name>.sql``."""

    def build(version: int, phase: str, sql: str, name: str = "step") -> Migration:
        return parse_migration(f"db/{version:04d}_{phase}_{name}.sql", sql)

    return build


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """Direct access to ``db_url``."""
    database = Database(db_url)
    yield database
    database.engine.dispose()
