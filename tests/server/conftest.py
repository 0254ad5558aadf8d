"""A real ``slipway serve`` (uvicorn, in its own process) over a copy of the example project, with users.

Users: ``admin`` (admin everywhere), ``approver`` (approver on production, viewer elsewhere), ``deployer``
(deployer everywhere), ``viewer`` (viewer). Each has a password (``PASSWORD``) and an API token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import SLIPWAY, Project, make_project, project  # noqa: F401 - the fixture is used here
from tests.support.ports import free_port

PASSWORD = "correct horse battery staple"
USERS = {
    "admin": ["admin"],
    "approver": ["approver:production", "viewer"],
    "deployer": ["deployer"],
    "viewer": ["viewer"],
}
#: Bound for anything a test waits for (a busy machine is slow, not failing).
PATIENCE = 120.0
#: Debian's Chromium (scripts/install-testbed.sh) and the flags it runs with here (../shared/TESTBED.md).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Server:
    """A running ``slipway serve`` and what a test needs to talk to it."""

    project: Project
    url: str
    process: subprocess.Popen[str]
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, user: str | None = None) -> httpx.Client:
        """An API client, authenticated by ``user``'s token (none: anonymous)."""
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def wait_run(self, user: str, run_id: int, *states: str) -> dict[str, Any]:
        """The run once it is in one of ``states`` (fails after PATIENCE seconds)."""
        deadline = time.monotonic() + PATIENCE
        with self.client(user) as c:
            while True:
                run: dict[str, Any] = c.get(f"/api/projects/webapp/runs/{run_id}").json()
                if run["state"] in states:
                    return run
                if time.monotonic() > deadline:
                    raise AssertionError(f"run {run_id} is {run['state']}, not {states}; log:\n{self.log.read_text()}")
                time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server the way systemd does; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=PATIENCE)


def add_users(proj: Project, *, only: tuple[str, ...] | None = None) -> dict[str, str]:
    """Create the users above (or ``only`` some of them) with the CLI; their tokens."""
    tokens = {}
    for name, roles in USERS.items():
        if only is not None and name not in only:
            continue
        args = ["users", "add", name, "--password-stdin"] + [a for r in roles for a in ("--role", r)]
        proc = subprocess.run(
            [SLIPWAY, *args],
            cwd=proj.root,
            env=proj.env,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        tokens[name] = proj.slipway("users", "token", name).stdout.strip()
    return tokens


def start_server(proj: Project, tokens: dict[str, str], *extra: str) -> Server:
    """Start ``slipway serve`` on a free port and wait until it answers."""
    port = free_port()
    log = proj.root.parent / f"serve-{port}.log"
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [SLIPWAY, "serve", "--port", str(port), *extra],
            cwd=proj.root,
            env=proj.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    server = Server(proj, f"http://127.0.0.1:{port}", process, log, tokens)
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            if httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"slipway serve did not start (exit {process.poll()}):\n{log.read_text()}")
        time.sleep(0.1)


def stop_server(srv: Server) -> None:
    """SIGTERM to the server's process group; SIGKILL if it does not end."""
    if srv.process.poll() is None:
        os.killpg(srv.process.pid, signal.SIGTERM)
        try:
            srv.process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            os.killpg(srv.process.pid, signal.SIGKILL)
            srv.process.wait(timeout=10)


@pytest.fixture
def server(project: Project) -> Iterator[Server]:  # noqa: F811 - the e2e fixture, extended
    """A server of its own for a test that changes what runs where."""
    srv = start_server(project, add_users(project))
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for a module's tests that only read, or make runs of their own and look only at those."""
    proj = make_project(tmp_path_factory.mktemp("shared") / "webapp", REPO)
    srv = start_server(proj, add_users(proj))
    try:
        yield srv
    finally:
        stop_server(srv)
        proj.stop_apps()


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by Playwright (sync API). Tests that use it run one at a time
    (the "browser" xdist group: tests/conftest.py)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=PATIENCE * 1000
        )
        try:
            yield browser
        finally:
            browser.close()
