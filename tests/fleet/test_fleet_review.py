"""A review environment on real OpenSSH hosts: deployed like any environment, torn down over SSH."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.fleet.conftest import host_path, ssh_target
from tests.support.ports import free_port
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(300)


def git(project: Project, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project.root, env=project.env, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


def test_a_review_environment_on_two_ssh_hosts_is_removed_from_both(
    project: Project, ssh_testbed: Callable[..., SSHTestBed]
) -> None:
    bed = ssh_testbed(2)
    port = free_port()
    config_path = project.root / "slipway.yml"
    config = yaml.safe_load(config_path.read_text())
    hooks = config["deploy"]["hooks"]
    hooks["activate"] = [f"SLIPWAY_PYTHON={sys.executable} {cmd}" for cmd in hooks["activate"]]
    review = config["review"]
    review["vars"]["port"] = f"{{{{ {port - 4} + review.number }}}}"
    review["url"] = f"http://{bed.hosts[0].address}:{{{{ vars.port }}}}"
    review["targets"] = [
        {**ssh_target(bed, i, f"web-{i + 1}"), "path": "/srv/review-{{ review.number }}"} for i in range(2)
    ]
    review["database"] = {"url": "sqlite:///.slipway/review-{{ review.number }}.db"}  # migrations run here
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    trunk = git(project, "rev-parse", "--abbrev-ref", "HEAD")
    head = project.commit("review environments on SSH hosts")
    try:
        up = project.json("review", "up", "4", "--head", head, "--target", trunk)
        assert (up["state"], up["review_url"]) == ("succeeded", f"http://{bed.hosts[0].address}:{port}")
        for host in bed.hosts:
            with urllib.request.urlopen(f"http://{host.address}:{port}/health", timeout=5) as resp:
                assert json.loads(resp.read())["commit"] == up["commit"]
        roots = [host_path(bed, i, "review-4") for i in range(2)]
        assert all((root / "current").is_symlink() for root in roots)
        assert (project.root / ".slipway/review-4.db").is_file()

        project.slipway("review", "down", "4", "--reason", "closed")
        assert not any(root.exists() for root in roots)
        assert not (project.root / ".slipway/review-4.db").exists()
        for host in bed.hosts:
            with pytest.raises(OSError):
                urllib.request.urlopen(f"http://{host.address}:{port}/health", timeout=5)
    finally:
        for i in range(2):
            pidfile = host_path(bed, i, "review-4/shared/run/app.pid")
            if pidfile.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pidfile.read_text()), 15)
