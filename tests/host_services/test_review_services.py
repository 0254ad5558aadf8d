"""A review environment with deploy.services: its services run under its own supervisord, and tearing the
environment down stops them (and the daemon) before its deploy root goes."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.host_services.conftest import alive, config, health, wait_until
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(300)

Make = Callable[[dict[str, Any]], Project]


def _git(proj: Project, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=proj.root, env=proj.env, check=True, capture_output=True,
                          text=True).stdout.strip()


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_tearing_a_review_environment_down_stops_its_services(service_project: Make) -> None:
    port = free_port()
    data = config("{{ vars.port }}", [{"kind": "local", "name": "dev-1", "path": ".slipway/targets/dev"}])
    data["environments"]["dev"]["vars"] = {"port": free_port()}
    data["review"] = {
        "vars": {"port": f"{{{{ {port - 7} + review.number }}}}"},
        "targets": [{"kind": "local", "name": "web", "path": ".slipway/targets/review-{{ review.number }}"}],
    }
    proj = service_project(data)
    trunk = _git(proj, "rev-parse", "--abbrev-ref", "HEAD")
    _git(proj, "checkout", "-q", "-b", "feature")
    (proj.root / "app/feature.txt").write_text("review me\n")
    head = proj.commit("feature")
    _git(proj, "checkout", "-q", trunk)
    proj.slipway("review", "up", "7", "--head", head, "--target", trunk, "--branch", "feature")
    assert health(f"http://127.0.0.1:{port}")["status"] == "ok"
    root = proj.root / ".slipway/targets/review-7"
    pid = int((root / "supervisor/supervisord.pid").read_text())

    down = proj.slipway("review", "down", "7", "--reason", "merged")
    assert "web: stopped the services and their supervisord" in down.stdout + down.stderr
    assert _refuses(port) and not root.exists()
    wait_until("the review's supervisord is gone", lambda: not alive(pid), deadline=10)

