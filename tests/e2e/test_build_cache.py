"""Issue 15, dependency recipes: ``artifact.cache`` reuses the dependency layer of an unchanged lock file.

Real builds through the CLI in a small git project, no network. The "expensive" dependency step is a script
that writes a directory from the lock file and appends a line to a marker file each time it really runs
(the build guards it with ``test -d deps``, as docs/config.md says); that it did not run is read from the
marker, never from a clock. A second project builds a real wheelhouse with pip from a local mirror.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import GIT_ENV, Project
from tests.init.wheelhouse import make_wheelhouse

pytestmark = pytest.mark.timeout(300)

CONFIG = """\
version: 1
name: layered
artifact:
  build:
    - test -d deps || sh bin/deps.sh
  paths: ["."]
  cache:
    - key: [deps.lock]
      paths: [deps]
environments:
  dev:
    vars: {colour: blue}
    targets: [{kind: local, name: dev-1, path: .slipway/targets/dev}]
pipeline:
  - {name: build, kind: build}
"""

#: The dependency step: slow in real life (pip, npm); here it notes each real run in $DEPS_MARKER.
DEPS_SCRIPT = """\
set -e
echo ran >> "$DEPS_MARKER"
mkdir -p deps/bin
while read -r name; do echo "package $name" > "deps/$name.txt"; done < deps.lock
printf '#!/bin/sh\\necho tool\\n' > deps/bin/tool && chmod +x deps/bin/tool
ln -s bin/tool deps/tool
"""


def make_repo(root: Path, files: dict[str, str], extra_env: dict[str, str]) -> Project:
    """A git repository at ``root`` holding ``files``, committed, driven by the installed CLI."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester", **extra_env}
    env.pop("SLIPWAY_DATABASE_URL", None)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    project = Project(root=root, env=env)
    project.commit("first")
    return project


@pytest.fixture
def layered(tmp_path: Path) -> Project:
    root = tmp_path / "layered"
    root.mkdir()
    files = {"slipway.yml": CONFIG, "bin/deps.sh": DEPS_SCRIPT, "deps.lock": "flask\nsqlalchemy\n",
             "app.cfg": "greeting = hello\n", ".gitignore": ".slipway/\n"}
    return make_repo(root, files, {"DEPS_MARKER": str(tmp_path / "deps-ran")})


def git_head(project: Project) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.root, env=project.env, capture_output=True, text=True)
    return out.stdout.strip()


def dependency_runs(project: Project) -> int:
    """How many times the dependency step really ran."""
    marker = Path(project.env["DEPS_MARKER"])
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def build(project: Project) -> dict[str, str]:
    """Run the pipeline (the build stage alone); its run id and artifact digest."""
    run = project.json("run")
    assert run["state"] == "succeeded", run
    return {"id": str(run["id"]), "digest": run["artifact_digest"]}


def cache_notes(project: Project, run_id: str) -> list[str]:
    """The logs of the run's dependency cache steps, from the state store, in order."""
    query = ("SELECT steps.log FROM steps JOIN stages ON steps.stage_id = stages.id "
             "WHERE stages.run_id = ? AND steps.name LIKE 'dependency cache%' ORDER BY steps.id")
    db_path = project.root / ".slipway/state.db"
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)) as db:
        return [log for (log,) in db.execute(query, (int(run_id),))]


def artifact_members(project: Project, digest: str) -> dict[str, bytes | str]:
    """The artifact's files (contents) and links (targets), read from the store."""
    path = project.root / ".slipway/artifacts/sha256" / f"{digest.split(':', 1)[1]}.tar.gz"
    out: dict[str, bytes | str] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            data = tar.extractfile(member) if member.isfile() else None
            out[member.name] = data.read() if data else member.linkname
    return out


def test_an_unchanged_lock_file_reuses_the_layer_and_a_changed_one_rebuilds_it(layered: Project) -> None:
    first = build(layered)
    assert dependency_runs(layered) == 1
    [miss, saved] = cache_notes(layered, first["id"])
    assert miss.startswith("dependency cache miss (key sha256:"), miss
    key = miss.split("(key ", 1)[1].split(")", 1)[0]
    assert saved.startswith(f"dependency cache saved (key {key}): deps as layer sha256:"), saved

    # A change to the app's configuration only: the same lock, the same layer; the step does not run.
    layered.edit("app.cfg", "hello", "good morning")
    layered.commit("config only")
    second = build(layered)
    assert dependency_runs(layered) == 1
    [hit] = cache_notes(layered, second["id"])
    assert hit.startswith(f"dependency cache hit (key {key}): restored deps from layer sha256:"), hit
    files = artifact_members(layered, second["digest"])
    assert files["app.cfg"] == b"greeting = good morning\n"
    assert files["deps/flask.txt"] == b"package flask\n" and files["deps/tool"] == "bin/tool"
    shown = " ".join(layered.slipway("logs", second["id"]).stdout.split())
    assert "dependency cache hit (key sha256:" in shown

    # slipway.yml changes outside the build (an environment's vars): still the same layer.
    layered.edit("slipway.yml", "colour: blue", "colour: green")
    layered.commit("slipway.yml, not the build")
    third = build(layered)
    assert dependency_runs(layered) == 1
    assert cache_notes(layered, third["id"])[0].startswith(f"dependency cache hit (key {key})")

    # A new lock: a new key, the step runs, and the artifact holds what the new lock says.
    layered.edit("deps.lock", "sqlalchemy\n", "sqlalchemy\nalembic\n")
    layered.commit("a new dependency")
    fourth = build(layered)
    assert dependency_runs(layered) == 2
    [miss, saved] = cache_notes(layered, fourth["id"])
    assert miss.startswith("dependency cache miss (key sha256:") and key not in miss, miss
    assert artifact_members(layered, fourth["digest"])["deps/alembic.txt"] == b"package alembic\n"
    layered.edit("app.cfg", "good morning", "hi")  # and the new layer is the one reused from now on
    layered.commit("config only, again")
    fifth = build(layered)
    assert dependency_runs(layered) == 2 and cache_notes(layered, fifth["id"])[0].startswith("dependency cache hit")


def test_a_warm_build_makes_the_same_artifact_as_a_cold_build_of_the_commit(layered: Project) -> None:
    build(layered)
    layered.edit("app.cfg", "hello", "bonjour")
    layered.commit("config only")
    warm = build(layered)
    assert dependency_runs(layered) == 1  # the layer was restored, not made
    shutil.rmtree(layered.root / ".slipway")  # no state, no artifacts, no cache: the same commit built cold
    cold = build(layered)
    assert dependency_runs(layered) == 2
    assert cache_notes(layered, cold["id"])[0].startswith("dependency cache miss")
    assert cold["digest"] == warm["digest"]


def test_a_changed_build_command_or_a_damaged_layer_is_a_miss(layered: Project) -> None:
    build(layered)
    layers = layered.root / ".slipway/cache/deps/layers"
    [stored] = list(layers.glob("*.tar"))
    stored.chmod(0o600)
    with stored.open("r+b") as fh:  # one flipped byte somewhere in the layer
        fh.seek(600)
        byte = fh.read(1)
        fh.seek(600)
        fh.write(bytes([byte[0] ^ 0xFF]))
    layered.edit("app.cfg", "hello", "hallo")
    layered.commit("config only")
    run = build(layered)
    assert dependency_runs(layered) == 2
    [miss, saved] = cache_notes(layered, run["id"])
    assert "cannot be used" in miss and "hashes to" in miss, miss
    assert saved.startswith("dependency cache saved"), saved

    # The build commands are part of the key: another dependency step may make another layer.
    layered.edit("slipway.yml", "test -d deps || sh bin/deps.sh", "test -d deps || sh -e bin/deps.sh")
    layered.commit("another dependency step")
    run = build(layered)
    assert dependency_runs(layered) == 3
    assert cache_notes(layered, run["id"])[0].startswith("dependency cache miss")


def test_only_the_last_layers_are_kept(layered: Project) -> None:
    layered.edit("slipway.yml", "paths: [deps]", "paths: [deps]\n      keep: 2")
    layered.commit("keep two")
    for n in range(3):
        (layered.root / "deps.lock").write_text(f"flask\nextra{n}\n")
        layered.commit(f"lock {n}")
        build(layered)
    assert dependency_runs(layered) == 3
    cache = layered.root / ".slipway/cache/deps"
    assert len(list((cache / "keys").glob("*.json"))) == 2
    assert len(list((cache / "layers").glob("*.tar"))) == 2
    assert not [p for p in cache.rglob(".tmp-*")]
    for n, runs in ((1, 3), (0, 4)):  # the second lock's layer is kept; the first one's was pruned
        (layered.root / "deps.lock").write_text(f"flask\nextra{n}\n")
        layered.commit(f"lock {n} again")
        build(layered)
        assert dependency_runs(layered) == runs


def test_a_cache_path_the_commit_holds_is_refused_with_its_line(layered: Project) -> None:
    (layered.root / "deps").mkdir()
    (layered.root / "deps/vendored.txt").write_text("committed by mistake\n")
    commit = layered.commit("vendored deps")
    out = layered.slipway("run", check=False)
    assert out.returncode == 2, out.stderr  # a config error
    text = " ".join(out.stderr.split())
    assert "slipway.yml:9:15" in text and "artifact.cache[0].paths[0]" in text, out.stderr
    assert f"cache path 'deps' is in commit {commit[:12]}" in text and "git rm -r --cached deps" in text
    assert "Traceback" not in out.stderr and dependency_runs(layered) == 0


def test_validate_names_a_missing_lock_file_with_its_line(layered: Project) -> None:
    layered.edit("slipway.yml", "key: [deps.lock]", "key: [deps.lock, requirements.lock]")
    out = layered.slipway("validate", check=False)
    assert out.returncode == 2, out.stderr
    text = " ".join(out.stderr.split())
    assert "slipway.yml:8:" in text and "artifact.cache[0].key[1]" in text, out.stderr
    assert "cache key file 'requirements.lock' is not a file in the project directory" in text
    assert "commit requirements.lock" in text and "Traceback" not in out.stderr
    # The working tree has it, the commit does not: the run names the commit.
    (layered.root / "requirements.lock").write_text("x\n")
    layered.slipway("validate")
    layered.edit("deps.lock", "flask", "flask2")  # any commit without requirements.lock
    subprocess.run(["git", "add", "slipway.yml", "deps.lock"], cwd=layered.root, check=True, env=layered.env)
    subprocess.run(["git", "commit", "-qm", "lock file left out"], cwd=layered.root, check=True, env=layered.env)
    commit = git_head(layered)
    out = layered.slipway("run", "--allow-dirty", check=False)
    assert out.returncode == 2 and f"is not a file in commit {commit[:12]}" in " ".join(out.stderr.split())


# -- a real wheelhouse made by pip, from a local mirror ---------------------------------------------------

PIP_CONFIG = """\
version: 1
name: wheels
artifact:
  build:
    - mkdir -p wheels && "$BUILD_PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-index --find-links wheels --find-links "$MIRROR" --wheel-dir wheels -r requirements.txt
  paths: ["."]
  cache:
    - key: [requirements.txt]
      paths: [wheels]
environments:
  dev:
    targets: [{kind: local, name: dev-1, path: .slipway/targets/dev}]
pipeline:
  - {name: build, kind: build}
"""


@pytest.fixture
def wheel_project(tmp_path: Path) -> Iterator[Project]:
    mirror = make_wheelhouse(tmp_path / "mirror", ["iniconfig"])
    [wheel] = [p.name for p in mirror.glob("*.whl")]
    root = tmp_path / "wheels"
    root.mkdir()
    files = {"slipway.yml": PIP_CONFIG, "requirements.txt": "iniconfig\n", "app.py": "print('v1')\n",
             ".gitignore": ".slipway/\n"}
    env = {"MIRROR": str(mirror), "BUILD_PYTHON": _python_with_pip(), "PIP_CONFIG_FILE": os.devnull,
           "WHEEL": wheel}
    yield make_repo(root, files, env)


def _python_with_pip() -> str:
    """An interpreter with pip (the test environment's may have none: uv makes venvs without it)."""
    for candidate in (sys.executable, shutil.which("python3") or "python3"):
        if subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0:
            return candidate
    raise AssertionError("no python with pip on this machine: the wheelhouse test needs one")


def test_a_pip_wheelhouse_is_reused_without_the_mirror(wheel_project: Project, tmp_path: Path) -> None:
    cold = build(wheel_project)
    wheel = f"wheels/{wheel_project.env['WHEEL']}"
    assert wheel in artifact_members(wheel_project, cold["digest"])
    wheel_project.edit("app.py", "v1", "v2")
    wheel_project.commit("code only")
    empty = tmp_path / "no-mirror"
    empty.mkdir()
    # Offline and without the mirror, pip can only succeed with the wheels of the restored layer.
    warm = build_with(wheel_project, MIRROR=str(empty))
    assert cache_notes(wheel_project, warm["id"])[0].startswith("dependency cache hit")
    files = artifact_members(wheel_project, warm["digest"])
    assert files[wheel] == artifact_members(wheel_project, cold["digest"])[wheel]
    assert files["app.py"] == b"print('v2')\n"


def build_with(project: Project, **env: str) -> dict[str, str]:
    run = json.loads(project.slipway("run", "--json", extra_env=env).stdout)
    assert run["state"] == "succeeded", run
    return {"id": str(run["id"]), "digest": run["artifact_digest"]}
