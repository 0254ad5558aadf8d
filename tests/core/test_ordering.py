"""What "older" means when the repository cannot tell (the build order of the store's artifacts), and new release names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from slipway.model.states import DeploymentKind
from slipway.services.app import open_app
from slipway.services.ordering import older_because
from slipway.services.releases import fresh_release_id, new_release_id

OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def test_without_the_commits_in_the_repository_the_earlier_build_is_older(tmp_path: Path, repo_root: Path) -> None:
    shutil.copy(repo_root / "examples/webapp/slipway.yml", tmp_path / "slipway.yml")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)  # a repository that knows neither commit
    app = open_app(cwd=tmp_path, environ={"SLIPWAY_USER": "t"})
    try:
        for digest, commit, built_at in ((OLD, "a" * 40, 100.0), (NEW, "b" * 40, 200.0)):
            app.store.record_artifact(
                digest=digest, project="webapp", commit=commit, built_at=built_at, size=1, file_count=1, run_id=None
            )
        why = older_because(app, commit="a" * 40, digest=OLD, running_commit="b" * 40, running_digest=NEW)
        assert why is not None and "was built before" in why
        assert older_because(app, commit="b" * 40, digest=NEW, running_commit="a" * 40, running_digest=OLD) is None
        assert older_because(app, commit="a" * 40, digest=NEW, running_commit="b" * 40, running_digest=NEW) is None
        assert older_because(app, commit="a" * 40, digest=None, running_commit="b" * 40, running_digest=NEW) is None
    finally:
        app.close()


def test_a_second_deployment_of_one_artifact_in_the_same_second_gets_a_release_id_of_its_own(
    tmp_path: Path, repo_root: Path
) -> None:
    """Seen in CI: two runs of one commit reached production within a second, both releases were named
    ``<second>-<digest>``, and the web UI's rollback to the first could not be told from the second."""
    shutil.copy(repo_root / "examples/webapp/slipway.yml", tmp_path / "slipway.yml")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    app = open_app(cwd=tmp_path, environ={"SLIPWAY_USER": "t"})
    try:
        now = 1_800_000_000.25
        first = fresh_release_id(app, "production", NEW, now=now)
        assert first == new_release_id(NEW, now)
        app.store.start_deployment(
            environment="production", kind=DeploymentKind.DEPLOY, run_id=None, artifact_digest=NEW,
            release_id=first, deployed_by="t",
        )
        second = fresh_release_id(app, "production", NEW, now=now + 0.5)
        assert second != first and second > first  # still sorts by time
        assert fresh_release_id(app, "staging", NEW, now=now) == first  # another environment is not affected
    finally:
        app.close()
