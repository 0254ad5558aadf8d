"""pytest fixtures for a real nginx: ``pytest_plugins = ["tests.support.pytest_nginx"]``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.model.routing import Backend
from tests.support.nginx import NginxServer


@pytest.fixture
def nginx_server(tmp_path: Path) -> Iterator[NginxServer]:
    """A running private nginx proxying group ``app``; starts with one placeholder backend."""
    placeholder = Backend(port=9)  # discard port: nothing answers until a test sets the upstream
    server = NginxServer([placeholder], root=tmp_path / "nginx")
    server.start()
    try:
        yield server
    finally:
        server.stop()
