"""Checks wired into real deployments: the example app through the CLI, a TCP listener, a real PostgreSQL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.e2e.conftest import project  # noqa: F401 - the e2e fixture, reused
from tests.support.ports import free_port

#: The deployment pipeline every test here starts from; CHECKS, ENV_EXTRA and STAGES are filled in.
CONFIG = """\
version: 1
name: webapp
artifact:
  build: [python3 -m compileall -q app]
  paths: [app, bin]
deploy:
  shared: [data, log, run]
  hooks:
    configure: ['echo "PORT={{{{ vars.port }}}}" > app.env']
    activate: ['sh bin/restart.sh {{{{ vars.port }}}} {{{{ paths.shared }}}}']
    verify: ['python3 bin/healthcheck.py {{{{ environment.url }}}}/health --commit {{{{ release.commit }}}}']
  checks:
{checks}
environments:
  dev:
    url: "http://127.0.0.1:{{{{ vars.port }}}}"
    vars: {{port: {port}}}
    targets:
      - {{kind: local, name: dev-1, path: .slipway/targets/dev}}
{env_extra}
pipeline:
  - {{name: build, kind: build}}
  - {{name: deploy-dev, kind: deploy, environment: dev}}
{stages}
"""


def config(port: int, *, checks: str = "    []", env_extra: str = "", stages: str = "") -> str:
    """A slipway.yml for the example app on ``port`` with the given checks, environment keys and stages."""
    return CONFIG.format(port=port, checks=checks, env_extra=env_extra, stages=stages)


@dataclass
class TcpListener:
    """A TCP server on 127.0.0.1 that accepts (and closes) connections; stop and start it on the same port."""

    port: int = field(default_factory=free_port)
    _server: socket.socket | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        server.settimeout(0.1)
        self._server = server

        def serve() -> None:
            while self._server is server:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                conn.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@pytest.fixture
def tcp_listener() -> Iterator[TcpListener]:
    """A running TCP listener, stopped at the end of the test."""
    listener = TcpListener()
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()
