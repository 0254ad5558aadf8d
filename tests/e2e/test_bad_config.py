"""Issue 11, item 10: a slipway.yml that is an alias bomb or binary garbage is a ConfigError (exit 2) with
its position, read within bounded memory, and nothing is recorded as running."""

from __future__ import annotations

import resource
import subprocess

import pytest

from tests.e2e.conftest import SLIPWAY, Project

pytestmark = pytest.mark.timeout(300)
#: The address space the CLI gets: a few times what it needs, a fraction of what an unbounded bomb takes.
MEMORY_LIMIT = 1 << 30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def slipway_limited(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI under a 1 GiB address-space limit: a regression fails with MemoryError instead of eating the host."""
    return subprocess.run(
        [SLIPWAY, *args], cwd=project.root, env=project.env, capture_output=True, text=True, timeout=240,
        preexec_fn=_limit_memory, check=False,
    )


def billion_laughs() -> str:
    lines = ["name: webapp", 'lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):  # 10**10 values once expanded
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_within_bounded_memory(project: Project) -> None:
    (project.root / "slipway.yml").write_text(billion_laughs())
    project.commit("a billion laughs")
    for args in (["validate"], ["run"], ["run", "--dry-run"], ["run", "--allow-dirty"]):
        out = slipway_limited(project, *args)
        assert out.returncode == 2, (args, out.returncode, out.stderr[-2000:])
        assert "expands to more than" in out.stderr and "slipway.yml:" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and "MemoryError" not in out.stderr
    assert not (project.root / ".slipway").exists()  # nothing recorded, nothing built


def test_binary_garbage_is_a_config_error_naming_the_line(project: Project) -> None:
    good = (project.root / "slipway.yml").read_text()
    (project.root / "slipway.yml").write_bytes(b"version: 1\nname: webapp\n\x89PNG\r\n\x1a\n\x00\xff\xd8garbage")
    commit = project.commit("an image committed as slipway.yml")
    for args in (["validate"], ["run"]):
        out = slipway_limited(project, *args)
        assert out.returncode == 2, (args, out.returncode, out.stderr[-2000:])
        assert "slipway.yml:3:1" in out.stderr and "not UTF-8" in out.stderr and "Traceback" not in out.stderr
    # A good working tree over a commit whose slipway.yml is garbage: the committed copy is named.
    (project.root / "slipway.yml").write_text(good)
    out = slipway_limited(project, "run", "--allow-dirty")
    assert out.returncode == 2 and f"slipway.yml@{commit[:12]}:3:1" in out.stderr, out.stderr
    assert not (project.root / ".slipway").exists()
