"""Fixtures for the checks tests: real servers on 127.0.0.1, SQLite files, a fake clock."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from checks_support import HttpServer, QuietServer, handler_for
from tests.support.ports import free_port
from tests.support.pytest_postgres import postgres_server, postgres_url  # noqa: F401

from slipway.testing.fakeclock import FakeClock


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServer]:
    """An HTTP server on 127.0.0.1 and a free port, for the whole module."""
    state = HttpServer(base_url="")
    server = QuietServer(("127.0.0.1", 0), handler_for(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.closing.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock: retries and cool-downs cost no real time."""
    return FakeClock()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with no listener: connections are refused."""
    return free_port()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database with a ``deploy_state`` table holding one row."""
    path = tmp_path / "checks.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE deploy_state (schema_version INTEGER, healthy BOOLEAN, note TEXT)")
        db.execute("INSERT INTO deploy_state VALUES (42, 1, NULL)")
        db.commit()
    return f"sqlite:///{path}"
