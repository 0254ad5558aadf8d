"""What "older" means when the repository cannot tell: the build order of the store's artifacts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from slipway.services.app import open_app
from slipway.services.ordering import older_because

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
