"""Git, seen from Slipway: which commit to build, and a clean export of it to build from."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

from slipway.errors import ConfigError, SlipwayError


def _git(root: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SlipwayError(
            "git is not installed", hint="install git: Slipway builds commits, not working trees"
        ) from None
    if proc.returncode != 0:
        raise SlipwayError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def resolve_commit(root: Path, rev: str = "HEAD") -> str:
    """The full commit id of ``rev`` in the repository holding ``root``."""
    try:
        _git(root, "rev-parse", "--show-toplevel")
    except SlipwayError:
        raise ConfigError(
            f"{root} is not inside a git repository",
            hint="Slipway builds one artifact per commit: run 'git init' and commit your project first",
        ) from None
    try:
        return _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except SlipwayError:
        raise ConfigError(
            f"{rev!r} is not a commit in {root}", hint="commit your changes, or pass --commit REV"
        ) from None


def export_commit(root: Path, commit: str, dest: Path) -> None:
    """Write the tree of ``commit`` (the part under ``root``) into ``dest``: what was committed, nothing else."""
    prefix = _git(root, "rev-parse", "--show-prefix")
    dest.mkdir(parents=True, exist_ok=True)
    spec = f"{commit}:{prefix}" if prefix else commit
    proc = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", spec], capture_output=True, check=False)
    if proc.returncode != 0:
        raise SlipwayError(f"cannot export commit {commit[:12]}: {proc.stderr.decode().strip()}")
    tar_path = dest.parent / f".{dest.name}.tar"
    tar_path.write_bytes(proc.stdout)
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="data")  # the data filter refuses absolute paths, '..' and devices
    finally:
        tar_path.unlink()


def committed_file(root: Path, commit: str, name: str) -> bytes | None:
    """The bytes of file ``name`` (relative to ``root``) as ``commit`` has it; None when it has no such file.

    Reads one blob instead of exporting the whole tree: a run reads its pipeline from the commit.
    """
    proc = subprocess.run(
        ["git", "-C", str(root), "cat-file", "blob", f"{commit}:./{name}"], capture_output=True, check=False
    )
    return proc.stdout if proc.returncode == 0 else None


def commit_subject(root: Path, commit: str) -> str:
    """The first line of the commit message."""
    return _git(root, "log", "-1", "--format=%s", commit)


def repo_path(root: Path, name: str) -> str:
    """``name`` (a file in ``root``) as a path from the top of its repository, as git shows it."""
    try:
        prefix = _git(root, "rev-parse", "--show-prefix")
    except SlipwayError:
        return name
    return prefix + name


def is_ancestor(root: Path, older: str, newer: str) -> bool | None:
    """Whether commit ``older`` is an ancestor of ``newer``; None when the repository lacks either one."""
    for commit in (older, newer):
        known = subprocess.run(
            ["git", "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True, check=False
        )
        if known.returncode != 0:
            return None
    proc = subprocess.run(
        ["git", "-C", str(root), "merge-base", "--is-ancestor", older, newer], capture_output=True, check=False
    )
    if proc.returncode not in (0, 1):
        return None
    return proc.returncode == 0
