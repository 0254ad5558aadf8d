"""Which slipway.yml a run follows: the one in its commit, said out loud and compared with the working tree.

``validate`` reads the working tree's file; a run reads its commit's (docs/config.md). When the two
differ, what was validated is not what runs: ``run`` refuses unless ``--allow-dirty`` and ``validate``
warns, each naming the commit and the file's path in the repository.
"""

from __future__ import annotations

from dataclasses import dataclass

from slipway.config import LoadedConfig, parse_config
from slipway.config_source import decode
from slipway.errors import ConfigError, SlipwayError
from slipway.services.app import App
from slipway.vcs import committed_file, repo_path, resolve_commit


@dataclass(frozen=True)
class CommittedConfig:
    """The slipway.yml text of one commit, and how it compares with the working tree's."""

    commit: str
    path_in_repo: str
    text: str | None  # None: the commit has no such file
    same_as_working_tree: bool

    def describe(self) -> str:
        """``slipway.yml of commit 1a2b3c4d5e6f``: what a run says it follows."""
        return f"{self.path_in_repo} of commit {self.commit[:12]}"


def committed_config(app: App, commit: str) -> CommittedConfig:
    """Read ``commit``'s copy of the slipway.yml that ``app`` loaded from the working tree."""
    name = app.config.path.name
    where = repo_path(app.root, name)
    data = committed_file(app.root, commit, name)
    text = None if data is None else decode(data, file=f"{where}@{commit[:12]}")
    return CommittedConfig(commit, where, text, text == app.config.text)


def run_config(app: App, commit: str, *, allow_dirty: bool, pushed: bool = False) -> LoadedConfig:
    """The configuration a run of ``commit`` follows; ConfigError when it has none, or when the working
    tree's differs and ``allow_dirty`` is not given. A ``pushed`` commit (a trigger's: services/triggers.py)
    is not compared with the working tree: the server's checkout is not where the team changes it."""
    source = committed_config(app, commit)
    if source.text is None:
        raise ConfigError(
            f"commit {commit[:12]} has no {source.path_in_repo}",
            hint="commit slipway.yml: the pipeline is code and runs as committed",
        )
    if not source.same_as_working_tree and not pushed:
        if not allow_dirty:
            raise ConfigError(
                f"{app.config.path} differs from {source.describe()}, which the run would follow",
                hint="commit your change and run again, or 'git checkout' the file to drop it; --allow-dirty "
                "runs the committed file anyway",
            )
        app.observer.message(f"warning: {app.config.path} has changes that are not committed; --allow-dirty: "
                             f"they are ignored")
    app.observer.message(f"pipeline: {source.describe()}")
    return parse_config(source.text, path=app.config.path)


def head_difference(app: App) -> str | None:
    """A warning for ``validate`` when HEAD's slipway.yml is not the working tree's (None when they agree,
    or when the project is not in a git repository)."""
    try:
        head = resolve_commit(app.root, "HEAD")
        source = committed_config(app, head)
    except SlipwayError:
        return None  # not a repository, or no commit yet: nothing to compare with
    if source.text is None:
        return f"HEAD (commit {head[:12]}) has no {source.path_in_repo}: commit it, 'slipway run' follows the commit"
    if not source.same_as_working_tree:
        return (
            f"this file differs from {source.describe()} (HEAD), which 'slipway run' follows: "
            "commit your change first"
        )
    return None
