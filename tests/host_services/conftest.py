"""Services on hosts (deploy.services): the example app's server under the supervisord Slipway owns.

The project here is examples/webapp's app alone, run as a service (no restart script, no hooks), in its
own git repository; every supervisord a test started is shut down when it ends, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import GIT_ENV, Project
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)

#: The service's command: the example's stdlib server, on the port Slipway gives it, its pid in shared/run.
COMMAND = (
    "{python} -m app.server --host {{{{ host.address }}}} --port $PORT --data {{{{ paths.shared }}}}/data "
    "--pidfile {{{{ paths.shared }}}}/run/web-$SLIPWAY_INSTANCE.pid --grace 2"
)


def config(port: int | str, targets: list[dict[str, Any]], **service: Any) -> dict[str, Any]:
    """A slipway.yml with one service ``web`` on ``port`` and one environment ``dev`` on ``targets``."""
    return {
        "version": 1,
        "name": "svc",
        "artifact": {"paths": ["app"]},
        "deploy": {
            "shared": ["data", "log", "run"],
            "keep_releases": 3,
            "services": {"web": {"command": COMMAND.format(python=sys.executable), "port": port,
                                 "stop_timeout": 5, **service}},
        },
        "environments": {"dev": {"targets": targets}},
        "pipeline": [{"name": "build", "kind": "build"}, {"name": "deploy-dev", "kind": "deploy", "environment": "dev"}],
    }


def make_service_project(root: Path, repo: Path, data: dict[str, Any]) -> Project:
    """examples/webapp/app with ``data`` as slipway.yml, committed to a new git repository."""
    root.mkdir(parents=True)
    shutil.copytree(repo / "examples/webapp/app", root / "app")
    (root / "slipway.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    (root / ".gitignore").write_text(".slipway/\n")
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
    env.pop("SLIPWAY_DATABASE_URL", None)
    proj = Project(root=root, env=env)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    proj.commit("svc: first release")
    return proj


def shutdown_supervisors(roots: list[Path]) -> None:
    """Stop every supervisord (and so its services) under these deploy roots: by pid, then wait."""
    for root in roots:
        for pidfile in root.glob("**/supervisor/supervisord.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)


@pytest.fixture
def service_project(tmp_path: Path, repo_root: Path) -> Iterator[Callable[[dict[str, Any]], Project]]:
    """``make(config) -> Project``; every supervisord under the project is shut down at the end."""
    made: list[Project] = []

    def make(data: dict[str, Any]) -> Project:
        proj = make_service_project(tmp_path / f"svc{len(made)}", repo_root, data)
        made.append(proj)
        return proj

    try:
        yield make
    finally:
        shutdown_supervisors([p.root for p in made])


def health(url: str, timeout: float = 2) -> dict[str, Any]:
    """GET /health of the app."""
    with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
        return dict(json.loads(response.read()))


def wait_until(what: str, probe: Callable[[], bool], *, deadline: float = 30) -> None:
    """Poll ``probe`` until it holds, at most ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {deadline} s: {what}")


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def run_binding_a_taken_port(proj: Project, address: str, message: str) -> tuple[str, int]:
    """Commit a release whose app binds a port something else holds (on ``address``), run the pipeline;
    the run's output (it must fail: asserted here) and the port."""
    with socket.socket() as busy:
        busy.bind((address, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        proj.edit("app/server.py", "Server((args.host, args.port)", f"Server((args.host, {taken})")
        proj.commit(message)
        failed = proj.slipway("run", check=False)
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    return output, taken
