"""Fixtures for the router tests: a real nginx and real HTTP backends on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from routers_support import HttpBackend
from tests.e2e.conftest import project  # noqa: F401  (the fixture: test_bootstrap.py)
from tests.support.ports import free_port
from tests.support.pytest_nginx import nginx_server  # noqa: F401  (the fixture)


@pytest.fixture
def backends() -> Iterator[Callable[..., HttpBackend]]:
    """Factory: ``backends("a", slot="blue")`` starts a named backend on a free port."""
    started: list[HttpBackend] = []

    def make(name: str, *, slot: str | None = None) -> HttpBackend:
        backend = HttpBackend(name=name, port=free_port(), slot=slot)
        backend.start()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.stop()
