"""Build workspaces: a clean export of a run's commit, named by what it holds, created atomically, pruned.

Layout, under the state directory::

    work/<commit>-run-<id>/commit   the full commit id the tree was exported from (written before the rename)
    work/<commit>-run-<id>/tree/    the export: builds, tests and post-deploy commands run here (tests and
                                    later stages with the run's artifact unpacked over it)
    work/<commit>-run-<id>/artifact the digest unpacked over the tree
    work/.tmp-<pid>-<random>/       an export in progress (renamed into place only once complete)

A run id alone does not say what a directory holds: ids start again at 1 with a new state store, and a
workspace found by such a name once deployed the first commit's files for the second commit. The name
carries the commit, the ``commit`` file is checked on every use, and a real build always starts from a
fresh export (build outputs of an earlier run never leak into an artifact).

Pruning (:func:`prune_workspaces`, at the start and end of every run): a workspace is kept while its run
is not final in the state store in use (running, waiting at a gate: its later stages still run commands
in it); every other entry is removed, and so is an export in progress whose process is gone. A run whose
workspace was pruned gets a fresh export of its commit if it ever needs one again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from slipway.artifacts.store import unpack_into
from slipway.model.records import RunRecord
from slipway.private import make_private_dir
from slipway.services.app import App
from slipway.vcs import export_commit

TMP_PREFIX = ".tmp-"


def work_root(app: App) -> Path:
    """The directory that holds every workspace."""
    return app.settings.state_dir / "work"


def workspace_name(run: RunRecord) -> str:
    """The directory name of a run's workspace: its commit first, then the run."""
    return f"{run.commit}-run-{run.id}"


def workspace(app: App, run: RunRecord, *, fresh: bool = False) -> Path:
    """The export of the run's commit that builds and tests run in: verified, else (or if ``fresh``) made anew."""
    final = work_root(app) / workspace_name(run)
    if not fresh and _holds(final, run.commit):
        return final / "tree"
    make_private_dir(final.parent)  # the exported source is nobody else's business
    tmp = final.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        export_commit(app.root, run.commit, tmp / "tree")
        (tmp / "commit").write_text(run.commit + "\n")
        if final.exists() or final.is_symlink():  # stale, foreign or to be rebuilt: set aside, then remove
            old = final.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "tree"


def with_artifact(app: App, run: RunRecord, tree: Path) -> Path:
    """``tree`` (the run's workspace) with the run's artifact unpacked over it, once: test and later stages
    run against the very files that are deployed, also when the build was reused from an earlier run
    (whose workspace, with the build's outputs, is gone). The digest unpacked is noted beside the tree."""
    digest = run.artifact_digest
    if digest is None:
        return tree
    marker = tree.parent / "artifact"
    with contextlib.suppress(OSError):
        if marker.read_text().strip() == digest:
            return tree
    unpack_into(app.artifacts, digest, tree)
    marker.write_text(digest + "\n")
    return tree


def _holds(path: Path, commit: str) -> bool:
    """Whether ``path`` is a complete workspace exported from ``commit``."""
    try:
        recorded = (path / "commit").read_text().strip()
    except OSError:
        return False
    return not path.is_symlink() and recorded == commit and (path / "tree").is_dir()


def prune_workspaces(app: App) -> list[str]:
    """Remove every workspace no unfinished run needs; return the names removed (the rule: module doc)."""
    root = work_root(app)
    if not root.is_dir():
        return []
    entries = sorted(os.listdir(root))  # listed before the runs: a workspace made later has a run by then
    keep = {workspace_name(run) for run in app.store.unfinished_runs()}
    removed = []
    for name in entries:
        if name in keep or (name.startswith(TMP_PREFIX) and _owner_alive(name)):
            continue
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(name)
    return removed


def _owner_alive(name: str) -> bool:
    """Whether the process that is writing ``.tmp-<pid>-...`` still runs on this machine."""
    pid = name[len(TMP_PREFIX) :].split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
