"""The example webapp with its database on SQLite or a real PostgreSQL, driven through the real CLI."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from tests.e2e.conftest import GIT_ENV, Project
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer

from slipway.store.repository import Store

ENVIRONMENTS = ("dev", "staging", "production")


@dataclass
class WebApp(Project):
    """The example project plus the URL of each environment's application database."""

    db_urls: dict[str, str] = field(default_factory=dict)
    #: What the commits of each release are called.
    label: ClassVar[str] = "webapp"

    def overlay(self, release: int) -> str:
        """Copy parallel-change/release-N over the project and commit it; return the commit."""
        shutil.copytree(self.root / f"parallel-change/release-{release}", self.root, dirs_exist_ok=True)
        return self.commit(f"{self.label}: release {release}")

    def columns(self, environment: str) -> set[str]:
        engine = sa.create_engine(self.db_urls[environment], poolclass=NullPool)
        try:
            return {c["name"] for c in sa.inspect(engine).get_columns("items")}
        finally:
            engine.dispose()

    def tables(self, environment: str) -> set[str]:
        engine = sa.create_engine(self.db_urls[environment], poolclass=NullPool)
        try:
            return set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()

    def execute(self, environment: str, sql: str) -> None:
        engine = sa.create_engine(self.db_urls[environment], poolclass=NullPool)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def applied(self, environment: str) -> dict[str, dict[str, Any]]:
        rows = self.json("migrations", "status", environment)
        return {r["name"]: r for r in rows}

    def store(self) -> Store:
        return Store(f"sqlite:///{self.root / '.slipway/state.db'}")

    def call(self, environment: str, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        return call(self.ports[environment], method, path, body)


def call(port: int, method: str, path: str, body: object | None = None, timeout: float = 5) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@dataclass
class Load:
    """Continuous, bounded load on one port: alternating POST and GET, each outcome timestamped."""

    port: int
    max_requests: int = 20_000
    max_seconds: float = 240
    results: list[tuple[float, bool, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self._stop.is_set() and n < self.max_requests and time.monotonic() < deadline:
            n += 1
            at = time.time()
            try:
                if n % 2:
                    status, body = call(self.port, "POST", "/items", {"name": f"Load Tester{n}"}, timeout=10)
                    ok = status == 201
                else:
                    status, body = call(self.port, "GET", "/health", timeout=10)
                    ok = status == 200
                self.results.append((at, ok, "" if ok else f"{status} {body}"))
            except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, reset: each one a failure
                self.results.append((at, False, repr(exc)))
            time.sleep(0.005)

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def within(self, start: float, end: float) -> list[tuple[float, bool, str]]:
        return [r for r in self.results if start <= r[0] <= end]


def make_webapp(tmp_path: Path, repo_root: Path, backend: str, pg: PostgresServer | None) -> WebApp:
    root = tmp_path / "webapp"
    shutil.copytree(repo_root / "examples/webapp", root)
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
    env.pop("SLIPWAY_DATABASE_URL", None)
    app = WebApp(root=root, env=env)
    config = root / "slipway.yml"
    text = config.read_text()
    for name, port in re.findall(r"\n  (\w+):\n    url: .*\n    vars: \{port: (\d+)\}", text):
        app.ports[name] = free_port()
        text = text.replace(f"vars: {{port: {port}}}", f"vars: {{port: {app.ports[name]}}}")
    for name in ENVIRONMENTS:
        sqlite_line = f'    database: {{url: "sqlite:///.slipway/targets/{name}/shared/data/app.db"}}\n'
        assert sqlite_line in text
        if backend == "postgres":
            assert pg is not None
            var = f"WEBAPP_DATABASE_URL_{name.upper()}"
            env[var] = pg.create_database(f"webapp_{name}_{uuid.uuid4().hex[:12]}")
            app.db_urls[name] = env[var]
            text = text.replace(
                sqlite_line, f"    secrets: {{DATABASE_URL: {{env: {var}}}}}\n    database: {{secret: DATABASE_URL}}\n"
            )
        else:
            app.db_urls[name] = f"sqlite:///{root}/.slipway/targets/{name}/shared/data/app.db"
    # The app runs with this interpreter: it has psycopg for PostgreSQL (bin/restart.sh, docs/migrations.md).
    env["SLIPWAY_PYTHON"] = sys.executable
    config.write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    app.commit("webapp: release 1")
    return app


@pytest.fixture(params=["sqlite", "postgres"])
def webapp(request: pytest.FixtureRequest, tmp_path: Path, repo_root: Path) -> Iterator[WebApp]:
    """The example on SQLite and on a real PostgreSQL (one database per environment)."""
    pg = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    app = make_webapp(tmp_path, repo_root, request.param, pg)
    try:
        yield app
    finally:
        app.stop_apps()


@pytest.fixture
def sqlite_webapp(tmp_path: Path, repo_root: Path) -> Iterator[WebApp]:
    """The example on SQLite only, without its unit-test stage (the bad-input tests: the app's own unit
    tests apply its migrations too and would stop a broken one before Slipway's checks are reached)."""
    app = make_webapp(tmp_path, repo_root, "sqlite", None)
    config = app.root / "slipway.yml"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if "name: unit-tests" not in line))
    app.commit("without the unit-test stage")
    try:
        yield app
    finally:
        app.stop_apps()
