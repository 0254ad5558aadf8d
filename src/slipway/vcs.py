"""Git, seen from Slipway: which commit to build, and a clean export of it to build from."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from slipway.artifacts.archive import check_link_target
from slipway.errors import ConfigError, SlipwayError, UnsafeArchive


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
    """Write the tree of ``commit`` (the part under ``root``) into ``dest``: what was committed, nothing else.

    Symbolic links that stay inside the tree are exported as links; an absolute one, or one that climbs
    out of the tree, is a ConfigError naming it (checked before anything is written).
    """
    check_commit_links(root, commit)
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
    except tarfile.FilterError as exc:  # what check_commit_links missed: still the user's tree, not a crash
        raise ConfigError(
            f"commit {commit[:12]} cannot be exported safely: {exc}", hint=LINK_HINT
        ) from None
    finally:
        tar_path.unlink()


LINK_HINT = (
    "a committed symlink must be relative and stay inside the project directory: point it at a path inside "
    "the repository, or remove it from the commit (git rm --cached PATH) and commit again"
)


def check_commit_links(root: Path, commit: str) -> None:
    """Refuse a commit whose tree (the part under ``root``) holds an absolute or escaping symbolic link."""
    prefix = _git(root, "rev-parse", "--show-prefix")
    spec = f"{commit}:{prefix}" if prefix else commit
    listing = subprocess.run(["git", "-C", str(root), "ls-tree", "-r", "-z", spec], capture_output=True, check=False)
    if listing.returncode != 0:
        raise SlipwayError(f"cannot list commit {commit[:12]}: {listing.stderr.decode(errors='replace').strip()}")
    links: list[tuple[str, str]] = []
    for entry in listing.stdout.split(b"\0"):
        meta, _, name = entry.partition(b"\t")
        fields = meta.split()
        if len(fields) == 3 and fields[0] == b"120000":
            links.append((name.decode(errors="replace"), fields[2].decode()))
    if not links:
        return
    batch = "".join(f"{sha}\n" for _, sha in links).encode()
    blobs = subprocess.run(
        ["git", "-C", str(root), "cat-file", "--batch"], input=batch, capture_output=True, check=False
    ).stdout
    for path, target in zip((p for p, _ in links), _batch_contents(blobs), strict=False):
        try:
            check_link_target(path, target)
        except UnsafeArchive as exc:
            where = f"{prefix}{path}" if prefix else path
            raise ConfigError(
                f"commit {commit[:12]} has a symlink that would leave its tree: {exc.message}",
                file=where,
                hint=LINK_HINT,
            ) from None


def _batch_contents(out: bytes) -> list[str]:
    """The contents of each object in ``git cat-file --batch`` output, in order."""
    contents = []
    pos = 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        fields = out[pos:header_end].split()
        size = int(fields[2]) if len(fields) == 3 else 0
        contents.append(out[header_end + 1 : header_end + 1 + size].decode(errors="replace"))
        pos = header_end + 1 + size + 1
    return contents


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
    if not (has_commit(root, older) and has_commit(root, newer)):
        return None
    proc = subprocess.run(
        ["git", "-C", str(root), "merge-base", "--is-ancestor", older, newer], capture_output=True, check=False
    )
    if proc.returncode not in (0, 1):
        return None
    return proc.returncode == 0


def _remote_git(root: Path, args: list[str], *, env: dict[str, str] | None, timeout: float) -> str:
    """Run a git command that talks to a remote: never prompts, bounded in time."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False, env=full_env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise SlipwayError(
            f"git {args[0]} {args[1] if len(args) > 1 else ''} did not finish in {timeout:g} s",
            hint="check that the remote answers (network, host key, credentials)",
        ) from None
    if proc.returncode != 0:
        raise SlipwayError(
            f"git {' '.join(args[:2])} failed: {proc.stderr.strip()[-2000:]}",
            hint="check the remote's URL and the credentials in 'triggers:' (docs/triggers.md)",
        )
    return proc.stdout


def fetch(root: Path, remote: str, refspecs: list[str], *, env: dict[str, str] | None = None, timeout: float = 300) -> None:
    """Fetch ``refspecs`` from ``remote`` (a remote's name or a URL) into the repository holding ``root``."""
    _remote_git(root, ["fetch", "--no-tags", "--quiet", "--", remote, *refspecs], env=env, timeout=timeout)


def remote_head(
    root: Path, remote: str, ref: str, *, env: dict[str, str] | None = None, timeout: float = 60
) -> str | None:
    """The commit ``ref`` (``refs/heads/main``) points at on ``remote`` (``git ls-remote``); None if it has none."""
    out = _remote_git(root, ["ls-remote", "--", remote, ref], env=env, timeout=timeout)
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name == ref:
            return sha
    return None


def has_commit(root: Path, commit: str) -> bool:
    """Whether the repository holding ``root`` has ``commit``."""
    proc = subprocess.run(
        ["git", "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True, check=False
    )
    return proc.returncode == 0
