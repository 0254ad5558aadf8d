"""pytest fixtures for a real PostgreSQL: ``postgres_server`` (one per session) and ``postgres_url``.

Use them from a conftest.py, either as a plugin in the top-level ``tests/conftest.py``::

    pytest_plugins = ["tests.support.pytest_postgres"]

or, in a conftest further down (where pytest does not allow ``pytest_plugins``), by importing them::

    from tests.support.pytest_postgres import postgres_server, postgres_url  # noqa: F401

Every test that asks for ``postgres_url`` gets an empty database of its own, dropped afterwards. The
server itself is started once per session and shared even when several conftest files import the
fixtures: it is kept in the pytest config's stash and stopped when the session ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer

_SERVER = pytest.StashKey[PostgresServer]()


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    """A PostgreSQL server on 127.0.0.1, started on first use and stopped at the end of the session."""
    server = request.config.stash.get(_SERVER, None)
    if server is None:
        server = PostgresServer().start()
        request.config.stash[_SERVER] = server
        request.config.add_cleanup(server.stop)
    return server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of a fresh, empty database for this test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
