"""Deterministic artifact archives and their manifests.

The archive is a gzip'd tar whose entries are sorted, with mtime 0, owner 0:0 and no user names, and
gzip's own header timestamp zeroed: the same files give the same bytes and so the same sha256 digest.
The manifest (commit, build time, one hash per file) lives beside the archive, not inside it, so that
recording *when* it was built does not change *what* was built.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from slipway.errors import ArtifactError, UnsafeArchive

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """One regular file of a release: where it goes, what it contains, whether it is executable."""

    path: str
    sha256: str
    size: int
    executable: bool = False

    @property
    def object_name(self) -> str:
        """Name of its content object in a host's object store (content + mode)."""
        return f"{self.sha256}-{'755' if self.executable else '644'}"


@dataclass(frozen=True)
class LinkEntry:
    """A symbolic link inside the release; its target never leaves the release."""

    path: str
    target: str


@dataclass(frozen=True)
class Manifest:
    """What an artifact contains and where it came from."""

    project: str
    commit: str
    built_at: float
    files: tuple[FileEntry, ...]
    links: tuple[LinkEntry, ...] = ()
    digest: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Total bytes of the files."""
        return sum(f.size for f in self.files)

    def directories(self) -> list[str]:
        """Every directory the release needs, parents first."""
        dirs: set[str] = set()
        for p in [f.path for f in self.files] + [link.path for link in self.links]:
            parent = PurePosixPath(p).parent
            while str(parent) not in (".", ""):
                dirs.add(str(parent))
                parent = parent.parent
        return sorted(dirs, key=lambda d: (d.count("/"), d))

    def to_json(self) -> str:
        """Serialise for the store."""
        return json.dumps(
            {
                "format": 1,
                "project": self.project,
                "commit": self.commit,
                "built_at": self.built_at,
                "digest": self.digest,
                "meta": self.meta,
                "files": [[f.path, f.sha256, f.size, f.executable] for f in self.files],
                "links": [[link.path, link.target] for link in self.links],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse what :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(
            project=data["project"],
            commit=data["commit"],
            built_at=data["built_at"],
            digest=data.get("digest", ""),
            meta=data.get("meta", {}),
            files=tuple(FileEntry(p, h, s, bool(x)) for p, h, s, x in data["files"]),
            links=tuple(LinkEntry(p, t) for p, t in data["links"]),
        )


def check_member_path(name: str) -> str:
    """Return a normalised relative path, or raise UnsafeArchive if it could escape."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise UnsafeArchive(f"archive member {name!r} has an absolute or malformed path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafeArchive(f"archive member {name!r} would escape the release directory")
    return "/".join(parts)


def check_link_target(path: str, target: str) -> None:
    """Refuse a symlink whose target is absolute or climbs out of the release."""
    if target.startswith("/"):
        raise UnsafeArchive(f"link {path!r} points to absolute path {target!r}")
    depth = len(PurePosixPath(path).parent.parts)
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            raise UnsafeArchive(f"link {path!r} -> {target!r} leaves the release directory")


def _link_hint(rel: str, target: str) -> str:
    """What to do about a link the artifact cannot hold (it would point elsewhere on every host)."""
    if "/bin/python" in rel or "/bin/python" in target:
        return (
            "a virtual environment made by 'python3 -m venv' links to this machine's interpreter: build a "
            "wheelhouse instead ('pip wheel -r requirements.txt -w wheels') and make the environment on each "
            "host in an install hook ('pip install --no-index --find-links wheels'), or leave it out with "
            "artifact.exclude (docs/config.md, artifact)"
        )
    return (
        "an artifact holds only links that stay inside it: make the link relative, copy the file it points to "
        "into the artifact, or leave it out with artifact.exclude"
    )


def _excluded(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(name, pat):
            return True
        if pat.startswith("**/") and (fnmatch.fnmatchcase(rel, pat[3:]) or fnmatch.fnmatchcase(name, pat[3:])):
            return True
    return False


def collect_files(base: Path, paths: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """Relative paths of every file and link selected by ``paths`` (globs allowed), sorted."""
    base = base.resolve()
    selected: set[str] = set()
    for pattern in paths:
        matches = sorted(base.glob(pattern)) if any(c in pattern for c in "*?[") else [base / pattern]
        if not any(m.exists() or m.is_symlink() for m in matches):
            raise ArtifactError(
                f"artifact path {pattern!r} matches nothing in the build directory",
                hint="check artifact.paths in slipway.yml; paths are relative to the repository root",
            )
        for match in matches:
            for item in _walk(match):
                rel = item.relative_to(base).as_posix()
                if rel.startswith("../"):
                    raise UnsafeArchive(f"artifact path {pattern!r} leaves the build directory")
                if not _excluded(rel, exclude) and not any(
                    _excluded("/".join(rel.split("/")[: i + 1]), exclude) for i in range(rel.count("/"))
                ):
                    selected.add(rel)
    return sorted(selected)


def _walk(path: Path) -> Iterator[Path]:
    if path.is_symlink() or path.is_file():
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs.sort()
        rootp = Path(root)
        for d in list(dirs):
            if (rootp / d).is_symlink():
                yield rootp / d
        for f in sorted(files):
            yield rootp / f


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_archive(
    base: Path, files: Sequence[str], out: BinaryIO, *, project: str, commit: str, built_at: float
) -> Manifest:
    """Write the deterministic archive of ``files`` (relative to ``base``) to ``out``; return its manifest."""
    entries: list[FileEntry] = []
    links: list[LinkEntry] = []
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in files:
            src = base / rel
            info = tarfile.TarInfo(check_member_path(rel))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            st = src.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(src)
                try:
                    check_link_target(rel, target)
                except UnsafeArchive as exc:
                    raise UnsafeArchive(exc.message, hint=_link_hint(rel, target)) from None
                info.type = tarfile.SYMTYPE
                info.linkname = target
                info.mode = 0o777
                tar.addfile(info)
                links.append(LinkEntry(rel, target))
                continue
            executable = bool(st.st_mode & 0o111)
            info.mode = 0o755 if executable else 0o644
            info.size = st.st_size
            sha = file_sha256(src)
            with src.open("rb") as fh:
                tar.addfile(info, fh)
            entries.append(FileEntry(rel, sha, st.st_size, executable))
    return Manifest(project=project, commit=commit, built_at=built_at, files=tuple(entries), links=tuple(links))


def iter_archive(path: Path) -> Iterator[tuple[str, tarfile.TarInfo, bytes | None]]:
    """Yield (safe path, member, data) for each member; refuse anything that could escape or is special."""
    try:
        with path.open("rb") as fh:
            yield from iter_archive_stream(fh, name=str(path))
    except OSError as exc:
        raise ArtifactError(f"cannot read artifact archive {path}: {exc}") from exc


def iter_archive_stream(fh: BinaryIO, *, name: str) -> Iterator[tuple[str, tarfile.TarInfo, bytes | None]]:
    """:func:`iter_archive` over an open file, read once from start to end (no seeking)."""
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=fh, mode="r|gz") as tar:
            for member in tar:
                rel = check_member_path(member.name)
                if member.isdir():
                    continue
                if rel in seen:  # a later member would silently replace an earlier one when unpacked
                    raise UnsafeArchive(f"archive member {rel!r} appears twice")
                seen.add(rel)
                if member.issym():
                    check_link_target(rel, member.linkname)
                    yield rel, member, None
                elif member.isfile():
                    data = tar.extractfile(member)
                    yield rel, member, data.read() if data else b""
                else:
                    raise UnsafeArchive(
                        f"archive member {member.name!r} is a {member.type!r} entry; only files and links are allowed"
                    )
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile, zlib.error) as exc:
        raise ArtifactError(f"cannot read artifact archive {name}: {exc}") from exc


def contents_of(fh: BinaryIO, *, name: str) -> tuple[tuple[FileEntry, ...], tuple[LinkEntry, ...]]:
    """The files (with their hashes) and links an archive really holds: what a manifest must say."""
    files: list[FileEntry] = []
    links: list[LinkEntry] = []
    for rel, member, data in iter_archive_stream(fh, name=name):
        if data is None:
            links.append(LinkEntry(rel, member.linkname))
        else:
            files.append(FileEntry(rel, hashlib.sha256(data).hexdigest(), len(data), bool(member.mode & 0o111)))
    return tuple(sorted(files, key=lambda f: f.path)), tuple(sorted(links, key=lambda k: k.path))
