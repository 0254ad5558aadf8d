"""End-to-end: the example project in a temporary git repository, driven through the real ``slipway`` CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port

SLIPWAY = str(Path(sys.executable).with_name("slipway"))
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


@dataclass
class Project:
    """A copy of examples/webapp with its own ports, committed to its own git repository."""

    root: Path
    env: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)

    def slipway(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 240,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [SLIPWAY, *args],
            cwd=self.root,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"slipway {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.slipway(*args, "--json").stdout)

    def commit(self, message: str) -> str:
        subprocess.run(["git", "add", "-A"], cwd=self.root, check=True, env=self.env)
        subprocess.run(["git", "commit", "-qm", message], cwd=self.root, check=True, env=self.env)
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=self.root, check=True, env=self.env, capture_output=True, text=True
        ).stdout.strip()

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.root / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {path}"
        file.write_text(text.replace(old, new))

    def status(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.json("status")["environments"]}

    def stop_apps(self) -> None:
        """Stop the app of every local deploy root, blue/green slots' included."""
        targets = self.root / ".slipway/targets"
        for shared in [*targets.glob("*/shared"), *targets.glob("*/slots/*/shared")]:
            subprocess.run(["sh", str(self.root / "bin/stop.sh"), str(shared)], check=False)


def make_project(root: Path, repo: Path) -> Project:
    """examples/webapp copied to ``root`` with free ports, committed to a new git repository."""
    shutil.copytree(repo / "examples/webapp", root)
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
    env.pop("SLIPWAY_DATABASE_URL", None)
    proj = Project(root=root, env=env)
    config = root / "slipway.yml"
    text = config.read_text()
    for name, port in re.findall(r"\n  (\w+):\n    url: .*\n    vars: \{port: (\d+)\}", text):
        proj.ports[name] = free_port()
        text = text.replace(f"vars: {{port: {port}}}", f"vars: {{port: {proj.ports[name]}}}")
    config.write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    proj.commit("webapp: first release")
    return proj


@pytest.fixture
def project(tmp_path: Path, repo_root: Path) -> Iterator[Project]:
    proj = make_project(tmp_path / "webapp", repo_root)
    try:
        yield proj
    finally:
        proj.stop_apps()
