"""``slipway init`` on generated sample projects, driven through the installed CLI, without network.

Python samples get their dependencies from a wheelhouse made of the test environment's own packages
(tests/init/wheelhouse.py): pip is pointed there by ``PIP_NO_INDEX``/``PIP_FIND_LINKS`` with no config
file, as a user's mirror would be; npm runs ``--offline`` (the Node sample has no dependencies).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import GIT_ENV, Project
from tests.host_services.conftest import shutdown_supervisors
from tests.init.wheelhouse import make_wheelhouse
from tests.support.ports import free_port

#: What the Python samples need, and so what the wheelhouse holds (with their dependencies).
SAMPLE_PACKAGES = ["flask", "gunicorn", "django", "fastapi", "uvicorn"]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of Flask, gunicorn, Django, FastAPI, uvicorn and their dependencies, made offline."""
    return make_wheelhouse(tmp_path_factory.mktemp("wheelhouse"), SAMPLE_PACKAGES)


def offline_env(wheelhouse: Path) -> dict[str, str]:
    """The environment slipway runs in: pip and npm without network, git's identity, no state URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "npm_config_"))}
    env.pop("SLIPWAY_DATABASE_URL", None)
    return {**env, **GIT_ENV, "SLIPWAY_USER": "tester", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(wheelhouse), "npm_config_offline": "true", "npm_config_update_notifier": "false",
            "npm_config_audit": "false", "npm_config_fund": "false"}


@pytest.fixture
def sample(tmp_path: Path, wheelhouse: Path) -> Iterator[Callable[[str], Project]]:
    """``make(name) -> Project``: an empty git repository for a sample; its supervisords stop at the end."""
    made: list[Project] = []

    def make(name: str) -> Project:
        root = tmp_path / name
        root.mkdir()
        proj = Project(root=root, env=offline_env(wheelhouse))
        subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=proj.env)
        made.append(proj)
        return proj

    try:
        yield make
    finally:
        shutdown_supervisors([p.root for p in made])


def free_ports(proj: Project) -> dict[str, int]:
    """Give each environment init wrote (``vars: {port: N}``) a free port instead; the ports by environment."""
    config = proj.root / "slipway.yml"
    text = config.read_text()
    found = re.findall(r"\n  (\w+):\n    url: .*\n    vars: \{port: (\d+)\}", text)
    assert [env for env, _ in found] == ["dev", "production"], text
    for env, port in found:
        proj.ports[env] = free_port()
        text = text.replace(f"vars: {{port: {port}}}", f"vars: {{port: {proj.ports[env]}}}")
    config.write_text(text)
    return proj.ports
