"""What lands on a host is what the commit holds: workspaces, manifests, release commits and symlinks.

Each test drives the example project through the installed ``slipway`` CLI (issue 11, items 1, 2, 9, 10).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.e2e.test_pipeline import health

pytestmark = pytest.mark.timeout(300)


def tree_hashes(root: Path, prefix: str) -> dict[str, str]:
    """sha256 of every file under ``root/prefix`` (symlinks resolved), by path relative to ``root``."""
    out = {}
    for path in sorted((root / prefix).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def committed_hashes(project: Project, commit: str, prefix: str) -> dict[str, str]:
    """sha256 of every file under ``prefix`` as ``commit`` has it."""
    names = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", commit, prefix],
        cwd=project.root, check=True, capture_output=True, text=True, env=project.env,
    ).stdout.split()
    return {
        name: hashlib.sha256(
            subprocess.run(["git", "show", f"{commit}:{name}"], cwd=project.root, check=True, capture_output=True).stdout
        ).hexdigest()
        for name in names
    }


def marker(project: Project, environment: str) -> dict[str, str]:
    return json.loads((project.root / f".slipway/targets/{environment}/current/.slipway-release").read_text())


def test_a_new_state_store_never_reuses_an_earlier_commits_workspace(project: Project) -> None:
    first = project.json("run")
    assert first["state"] == "waiting", first
    (project.root / ".slipway/state.db").unlink()  # a new store: run ids start again at 1
    for wal in (project.root / ".slipway").glob("state.db-*"):
        wal.unlink()
    project.edit("app/store.py", "oldest first", "oldest first (second commit)")
    second_commit = project.commit("webapp: second commit")
    second = project.json("run")
    assert second["id"] == first["id"] == 1 and second["state"] == "waiting", second
    assert second["artifact_digest"] != first["artifact_digest"]
    deployed = tree_hashes(project.root / ".slipway/targets/dev/current", "app")
    assert deployed == committed_hashes(project, second_commit, "app")  # the new commit's files, every one
    assert project.status()["dev"]["commit"] == second_commit
    assert health(project.ports["dev"])["commit"] == second_commit


def test_workspaces_are_named_by_commit_and_pruned_once_no_run_needs_them(project: Project) -> None:
    first = project.json("run")
    work = project.root / ".slipway/work"
    commit_one = project.status()["dev"]["commit"]
    assert sorted(os.listdir(work)) == [f"{commit_one}-run-{first['id']}"]  # waiting: its later stages need it
    assert (work / f"{commit_one}-run-{first['id']}/commit").read_text().strip() == commit_one
    (work / "run-7").mkdir()  # what an older Slipway, or a crashed export, left behind
    (work / ".tmp-999999999-dead").mkdir()
    project.slipway("approve", str(first["id"]), "--reason", "ship it")
    assert os.listdir(work) == []  # the run is final: nothing needs its workspace any more
    project.edit("app/store.py", "oldest first", "oldest first (v2)")
    commit_two = project.commit("v2")
    second = project.json("run")
    assert sorted(os.listdir(work)) == [f"{commit_two}-run-{second['id']}"]


def test_a_workspace_whose_recorded_commit_differs_is_exported_again(project: Project) -> None:
    """A directory with the right name but another commit's files (replaced by hand, say) is not used."""
    first = project.json("run")
    project.slipway("reject", str(first["id"]), "--reason", "next")
    project.edit("app/store.py", "oldest first", "oldest first (v2)")
    commit_two = project.commit("v2")
    work = project.root / ".slipway/work"
    planted = work / f"{commit_two}-run-2"
    (planted / "tree").mkdir(parents=True)
    (planted / "commit").write_text("0" * 40 + "\n")
    second = project.json("run")
    assert second["id"] == 2 and second["state"] == "waiting", second
    assert (planted / "commit").read_text().strip() == commit_two
    assert tree_hashes(project.root / ".slipway/targets/dev/current", "app") == committed_hashes(
        project, commit_two, "app"
    )


# ---- the manifest is inside the integrity check -------------------------------------------------------


def tamper_link_to_etc(manifest: dict[str, Any]) -> None:
    manifest["links"].append(["app/config", "/etc"])


def tamper_escaping_link(manifest: dict[str, Any]) -> None:
    manifest["links"].append(["app/up", "../../../../../../tmp"])


def tamper_swap_content(manifest: dict[str, Any]) -> None:
    files = {f[0]: f for f in manifest["files"]}
    store, server = files["app/store.py"], files["app/server.py"]
    store[1], store[2] = server[1], server[2]  # app/store.py would get app/server.py's bytes


TAMPERINGS = pytest.mark.parametrize(
    "tamper", [tamper_link_to_etc, tamper_escaping_link, tamper_swap_content], ids=["etc", "escape", "swap"]
)


def tamper_manifest(project: Project, tamper: Callable[[dict[str, Any]], None]) -> Path:
    [path] = (project.root / ".slipway/artifacts/sha256").glob("*.manifest.json")
    data = json.loads(path.read_text())
    tamper(data)
    path.write_text(json.dumps(data, sort_keys=True))
    return path


def host_state(root: Path) -> tuple[str, list[str]]:
    """What ``current`` points at, and every release directory."""
    return os.readlink(root / "current"), sorted(os.listdir(root / "releases"))


def promote_is_refused(project: Project, digest: str) -> str:
    refused = project.slipway("promote", digest, "--to", "staging", check=False)
    assert refused.returncode == 4, (refused.returncode, refused.stdout, refused.stderr)
    assert "manifest" in refused.stderr and "disagrees with its archive" in refused.stderr
    assert "Traceback" not in refused.stderr
    return refused.stderr


@TAMPERINGS
def test_a_tampered_manifest_is_refused_on_a_local_target(
    project: Project, tamper: Callable[[dict[str, Any]], None]
) -> None:
    waiting = project.json("run")
    project.slipway("reject", str(waiting["id"]), "--reason", "hold production")
    staging = project.root / ".slipway/targets/staging"
    before, status_before = host_state(staging), project.status()["staging"]
    tamper_manifest(project, tamper)
    promote_is_refused(project, waiting["artifact_digest"])
    assert host_state(staging) == before and project.status()["staging"] == status_before
    assert not (staging / "current/app/config").exists() and not (staging / "current/app/up").exists()
    # A run of the same commit does not reuse what does not verify: it builds again and repairs the store.
    again = project.json("run")
    assert again["state"] == "waiting" and again["artifact_digest"] == waiting["artifact_digest"], again
    commit = project.status()["staging"]["commit"]
    assert tree_hashes(staging / "current", "app") == committed_hashes(project, commit, "app")
    assert not (staging / "current/app/config").is_symlink() and not (staging / "current/app/up").is_symlink()


# ---- release.commit and artifact.commit -------------------------------------------------------------


def test_a_commit_that_builds_the_same_digest_deploys_as_itself(project: Project) -> None:
    first = project.json("run")
    project.slipway("approve", str(first["id"]), "--reason", "v1")
    commit_one = project.status()["dev"]["commit"]
    project.edit("slipway.yml", "keep_releases: 5", "keep_releases: 6")  # only the pipeline changes
    commit_two = project.commit("keep one more release")
    second = project.json("run")  # verify hooks check {{ release.commit }} against the app's marker
    assert second["state"] == "waiting", second
    assert second["artifact_digest"] == first["artifact_digest"]
    project.slipway("approve", str(second["id"]), "--reason", "v1 again")
    status = project.status()
    for environment in ("dev", "staging", "production"):
        assert status[environment]["commit"] == commit_two, status[environment]
        assert status[environment]["artifact_commit"] == commit_one
        assert marker(project, environment)["commit"] == commit_two
        assert marker(project, environment)["artifact_commit"] == commit_one
    assert health(project.ports["production"])["commit"] == commit_two


def test_hooks_see_release_commit_and_artifact_commit(project: Project) -> None:
    project.edit(
        "slipway.yml",
        '      - echo "PORT={{ vars.port }}" > app.env\n',
        '      - echo "PORT={{ vars.port }}" > app.env\n'
        '      - echo "{{ release.commit }} {{ artifact.commit }} $SLIPWAY_COMMIT $SLIPWAY_ARTIFACT_COMMIT" > commits\n',
    )
    commit_one = project.commit("record the commits")
    first = project.json("run")
    project.slipway("reject", str(first["id"]), "--reason", "next")
    project.edit("slipway.yml", "keep_releases: 5", "keep_releases: 6")
    commit_two = project.commit("only the pipeline changes")
    project.json("run")
    seen = (project.root / ".slipway/targets/dev/current/commits").read_text().split()
    assert seen == [commit_two, commit_one, commit_two, commit_one]


# ---- symlinks in the commit ---------------------------------------------------------------------------


def test_a_relative_symlink_inside_the_tree_ships_as_a_link(project: Project) -> None:
    (project.root / "app/latest.py").symlink_to("store.py")
    (project.root / "docs").mkdir()
    (project.root / "docs/app").symlink_to("../app")  # outside artifact.paths: exported, not shipped
    project.commit("links")
    waiting = project.json("run")
    assert waiting["state"] == "waiting", waiting
    current = project.root / ".slipway/targets/dev/current"
    assert os.readlink(current / "app/latest.py") == "store.py"
    assert (current / "app/latest.py").read_bytes() == (project.root / "app/store.py").read_bytes()
    assert not (current / "docs").exists()


@pytest.mark.parametrize(("path", "target"), [("notes/etc", "/etc"), ("app/up", "../../outside")])
def test_an_absolute_or_escaping_symlink_is_a_clear_error_before_any_run(
    project: Project, path: str, target: str
) -> None:
    link = project.root / path
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(target)
    project.commit("a bad link")
    out = project.slipway("run", check=False)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert path in out.stderr and target in out.stderr and "git rm --cached" in out.stderr
    assert "Traceback" not in out.stderr
    assert project.json("history") == []  # refused before a run was created: nothing left running
