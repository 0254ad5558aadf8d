"""Build cache (issue 15): the build stage of a commit that changes no lock file, cold against warm.

A project whose build makes a wheelhouse with real pip (``test -d wheels || pip wheel -r requirements.txt``)
from a local mirror of Flask, SQLAlchemy, Alembic, Django and gunicorn (made offline from the installed
packages, tests/init/wheelhouse.py), with ``artifact.cache`` keyed on requirements.txt. Each round builds
one commit cold (no ``.slipway``: no artifacts, no cache), then a config-only commit warm (the layer is
restored, pip does not run). The figure is the build stage's own duration, as the state store records it;
the ratio is cold over warm, per round and the median of ``ROUNDS``. The cold build here only copies wheels
from a local directory: with downloads and compiled code (the issue's 45-57 s) the ratio is larger.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.init.wheelhouse import make_wheelhouse

from benchmarks.common import GIT_ENV, git_project, table

ROUNDS = 3
PACKAGES = ["flask", "sqlalchemy", "alembic", "django", "gunicorn"]
SLIPWAY = str(Path(sys.executable).with_name("slipway"))
CONFIG = """\
version: 1
name: cached
artifact:
  build:
    - test -d wheels || "$BUILD_PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir wheels -r requirements.txt
  cache:
    - {key: [requirements.txt], paths: [wheels]}
  paths: ["."]
environments:
  dev:
    targets: [{kind: local, name: dev-1, path: .slipway/targets/dev}]
pipeline:
  - {name: build, kind: build}
"""


def _python_with_pip() -> str:
    for candidate in (sys.executable, shutil.which("python3") or "python3"):
        if subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0:
            return candidate
    raise RuntimeError("no python with pip: the benchmark builds a wheelhouse with it")


def _build_seconds(root: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run the pipeline (its build stage); the stage's duration and the cache step's note."""
    out = subprocess.run([SLIPWAY, "run", "--json"], cwd=root, env=env, capture_output=True, text=True,
                         timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"slipway run failed:\n{out.stderr[-3000:]}")
    run = json.loads(out.stdout)
    [stage] = [s for s in run["stages"] if s["name"] == "build"]
    logs = subprocess.run([SLIPWAY, "logs", str(run["id"])], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=True).stdout
    note = "hit" if "dependency cache hit" in logs else "miss" if "dependency cache miss" in logs else "?"
    return float(stage["duration"]), note


def _commit(root: Path, env: dict[str, str], message: str) -> None:
    subprocess.run(["git", "commit", "-qam", message], cwd=root, check=True, env=env)


def run() -> str:
    """Cold and warm build stages over ``ROUNDS`` rounds; a markdown section."""
    with tempfile.TemporaryDirectory(prefix="bench-build-cache-") as tmp:
        mirror = make_wheelhouse(Path(tmp) / "mirror", PACKAGES)
        wheels = list(mirror.glob("*.whl"))
        size = sum(p.stat().st_size for p in wheels)
        root = Path(tmp) / "project"
        requirements = "\n".join(PACKAGES) + "\n"
        git_project(root, {"slipway.yml": CONFIG, "requirements.txt": requirements, "app.cfg": "round = 0\n",
                           ".gitignore": ".slipway/\n"})
        env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "bench", "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
               "PIP_FIND_LINKS": str(mirror), "BUILD_PYTHON": _python_with_pip()}
        env.pop("SLIPWAY_DATABASE_URL", None)
        rows, ratios = [], []
        for n in range(1, ROUNDS + 1):
            shutil.rmtree(root / ".slipway", ignore_errors=True)
            (root / "app.cfg").write_text(f"round = {n}, cold\n")
            _commit(root, env, f"round {n}: cold")
            cold, cold_note = _build_seconds(root, env)
            (root / "app.cfg").write_text(f"round = {n}, warm\n")
            _commit(root, env, f"round {n}: config only")
            warm, warm_note = _build_seconds(root, env)
            if (cold_note, warm_note) != ("miss", "hit"):
                raise RuntimeError(f"round {n}: expected a miss then a hit, got {cold_note} then {warm_note}")
            ratios.append(cold / warm)
            rows.append([str(n), f"{cold:.2f} s", f"{warm:.2f} s", f"{cold / warm:.1f}x"])
    body = table(["round", "cold build (cache miss)", "warm build (cache hit)", "cold / warm"], rows)
    return (
        "## Build cache: an unchanged lock file reuses the dependency layer\n\n"
        f"The build stage of a project whose build makes a wheelhouse of {', '.join(PACKAGES)} and their "
        f"dependencies ({len(wheels)} wheels, {size / 2**20:.1f} MiB) with pip "
        "from a local mirror, cold (nothing cached) against warm (a config-only commit; the layer is restored "
        "and pip does not run). The state store's stage durations.\n\n"
        f"{body}\n\nMedian ratio: **{statistics.median(ratios):.1f}x** over {ROUNDS} rounds.\n"
    )


if __name__ == "__main__":
    print(run())
