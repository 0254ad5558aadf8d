"""A content-addressed artifact store in a local directory.

Layout: ``<root>/sha256/<hex>.tar.gz`` and ``<root>/sha256/<hex>.manifest.json``. An artifact is written
once and never replaced (a stored copy that no longer hashes to its name is repaired by the next build).
Every fetch hashes the bytes again: a tampered archive is refused. The manifest is not covered by the
digest (it records *when* and *from which commit*, which must not change *what*), so it is never trusted
for what lands on a host: :meth:`LocalArtifactStore.manifest` reads the archive it describes, hashing the
archive and every file in one pass, and refuses a manifest whose files, hashes, modes or links disagree.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, cast

from slipway.artifacts.archive import CHUNK, FileEntry, LinkEntry, Manifest, contents_of, iter_archive
from slipway.errors import ArtifactError, ArtifactNotFound, DigestMismatch
from slipway.private import make_private_dir

PREFIX = "sha256:"


def parse_digest(digest: str) -> str:
    """The hex part of ``sha256:<hex>`` (a bare hex digest is accepted too)."""
    hexpart = digest[len(PREFIX) :] if digest.startswith(PREFIX) else digest
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ArtifactError(
            f"{digest!r} is not an artifact digest",
            hint="digests look like sha256:<64 hex digits>; 'slipway history' lists them",
        )
    return hexpart


def digest_of(digest: str) -> str:
    """``sha256:<hex>`` from either form."""
    return PREFIX + parse_digest(digest)


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return PREFIX + digest.hexdigest()


class LocalArtifactStore:
    """Artifacts on the local disk, addressed by the sha256 of their bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._verified: dict[str, tuple[tuple[str, str, tuple[int, ...]], Manifest]] = {}

    def _archive(self, hexpart: str) -> Path:
        return self.root / "sha256" / f"{hexpart}.tar.gz"

    def _manifest(self, hexpart: str) -> Path:
        return self.root / "sha256" / f"{hexpart}.manifest.json"

    def add(self, archive: Path, manifest: Manifest) -> Manifest:
        """Move ``archive`` into the store under its digest; return the manifest with the digest set.

        The same bytes stored before are kept with their manifest (the first build's commit and time),
        unless the stored copy no longer matches: then the fresh build replaces what was damaged.
        """
        digest = sha256_file(archive)
        hexpart = parse_digest(digest)
        target = self._archive(hexpart)
        make_private_dir(self.root)
        make_private_dir(target.parent)
        stored = Manifest(
            project=manifest.project,
            commit=manifest.commit,
            built_at=manifest.built_at,
            files=manifest.files,
            links=manifest.links,
            digest=digest,
            meta=manifest.meta,
        )
        if target.is_file() and sha256_file(target) == digest:
            archive.unlink()  # same bytes are already stored: immutable, keep the first
            try:
                return self.manifest(digest)
            except ArtifactError:
                pass  # no manifest, or one that lies about the archive: write the true one below
        else:
            os.chmod(archive, 0o400)  # immutable, and private like the rest of the store
            shutil.move(str(archive), target)  # replaces a damaged copy (rename)
        self._write_atomic(self._manifest(hexpart), stored.to_json().encode())
        return stored

    def _write_atomic(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def exists(self, digest: str) -> bool:
        """Whether an artifact with this digest is stored (not verified)."""
        return self._archive(parse_digest(digest)).is_file()

    def fetch(self, digest: str) -> Path:
        """Path of the archive after verifying that its bytes still hash to ``digest``."""
        path = self._existing_archive(digest)
        actual = sha256_file(path)
        if actual != digest_of(digest):
            raise self._tampered(digest, actual)
        return path

    def _existing_archive(self, digest: str) -> Path:
        hexpart = parse_digest(digest)
        path = self._archive(hexpart)
        if not path.is_file():
            raise ArtifactNotFound(
                f"artifact {PREFIX}{hexpart} is not in the artifact store at {self.root}",
                hint="'slipway history' lists the artifacts that were built; run the pipeline to build one",
            )
        return path

    def _tampered(self, digest: str, actual: str) -> DigestMismatch:
        return DigestMismatch(
            f"artifact {digest_of(digest)} is corrupt or was tampered with: its bytes hash to {actual}",
            hint="nothing was deployed; rebuild it by running the pipeline for its commit",
        )

    def manifest(self, digest: str) -> Manifest:
        """The manifest stored with the artifact, verified against the archive (whose digest is checked too).

        Hashes the archive and every file in it in one pass; a manifest that names a file, hash, mode or
        link the archive does not hold is refused. The result is remembered while neither file changes.
        """
        path = self._existing_archive(digest)
        mpath = self._manifest(parse_digest(digest))
        if not mpath.is_file():
            raise ArtifactNotFound(
                f"artifact {digest_of(digest)} has no manifest in {self.root}",
                hint="run the pipeline for its commit again: the build writes the manifest again",
            )
        text = mpath.read_text()
        key = (digest_of(digest), text, _identity(path))
        cached = self._verified.get(key[0])
        if cached is not None and cached[0] == key:
            return cached[1]
        with _HashingReader(path) as hasher:
            try:
                files, links = contents_of(cast(BinaryIO, hasher), name=str(path))
            finally:  # an unreadable archive that does not hash to its name is reported as tampered
                hasher.drain()
                if hasher.digest() != digest_of(digest):
                    raise self._tampered(digest, hasher.digest())
        manifest = replace(_parse_manifest(text, mpath), digest=digest_of(digest))
        _check_manifest(manifest, files, links, digest=digest_of(digest), path=mpath)
        self._verified[key[0]] = (key, manifest)
        return manifest

    def read_objects(self, digest: str, wanted: set[str], *, verified: bool = False) -> dict[str, bytes]:
        """Contents of the files whose sha256 is in ``wanted``, each checked against its hash.

        ``verified`` says the caller has just checked the archive's digest with :meth:`fetch`, so it is
        not hashed a second time; every file is still hashed as it is read.
        """
        manifest = self.manifest(digest)
        by_path = {f.path: f for f in manifest.files}
        out: dict[str, bytes] = {}
        archive = self._archive(parse_digest(digest)) if verified else self.fetch(digest)
        for rel, _member, data in iter_archive(archive):
            entry = by_path.get(rel)
            if entry is None or data is None or entry.sha256 not in wanted or entry.sha256 in out:
                continue
            if hashlib.sha256(data).hexdigest() != entry.sha256:
                raise DigestMismatch(f"file {rel} in artifact {digest} does not match its manifest hash")
            out[entry.sha256] = data
            if len(out) == len(wanted):
                break  # the rest of the archive holds nothing we need
        return out


def unpack_into(store: LocalArtifactStore, digest: str, dest: Path) -> Manifest:
    """Write the artifact's files and links into the directory ``dest``, over what is there: each file is
    checked against its manifest hash as it is written; a file, link or directory in the way of one of the
    artifact's paths (or of their parent directories) is replaced. Paths never leave ``dest``."""
    manifest = store.manifest(digest)  # checks the archive's digest and the manifest against it
    by_path = {f.path: f for f in manifest.files}
    for rel, member, data in iter_archive(store.fetch(digest)):
        target = dest / rel
        _real_directories(dest, target.parent)
        _clear(target)
        if data is None:
            os.symlink(member.linkname, target)
            continue
        entry = by_path.get(rel)
        if entry is None or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise DigestMismatch(f"file {rel} in artifact {digest} does not match its manifest")
        target.write_bytes(data)
        target.chmod(0o755 if entry.executable else 0o644)
    return manifest


def _real_directories(root: Path, path: Path) -> None:
    """Make ``path`` (inside ``root``) a chain of real directories: a link or file in the way is removed."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink()
        current.mkdir(exist_ok=True)


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class _HashingReader(io.RawIOBase):
    """A file read once, front to back, hashing every byte handed out (and the rest on :meth:`drain`)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fh = path.open("rb")
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._fh.read(len(buffer))
        self._hash.update(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Hash what the reader did not consume (gzip trailer, tar padding)."""
        while chunk := self._fh.read(CHUNK):
            self._hash.update(chunk)

    def digest(self) -> str:
        return PREFIX + self._hash.hexdigest()

    def close(self) -> None:
        self._fh.close()
        super().close()


def _parse_manifest(text: str, path: Path) -> Manifest:
    try:
        return Manifest.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise DigestMismatch(
            f"the manifest {path} cannot be read: {exc!r}",
            hint="nothing was deployed; run the pipeline for the artifact's commit again to write a true manifest",
        ) from None


def _check_manifest(
    manifest: Manifest, files: tuple[FileEntry, ...], links: tuple[LinkEntry, ...], *, digest: str, path: Path
) -> None:
    """Refuse a manifest that does not describe exactly what the verified archive holds."""
    said = {f.path: f for f in manifest.files}
    held = {f.path: f for f in files}
    said_links = {k.path: k.target for k in manifest.links}
    held_links = {k.path: k.target for k in links}
    problems = [
        f"{p}: the manifest says {_describe(said.get(p))}, the archive holds {_describe(held.get(p))}"
        for p in sorted(said.keys() | held.keys())
        if said.get(p) != held.get(p)
    ] + [
        f"link {p}: the manifest says {said_links.get(p)!r}, the archive holds {held_links.get(p)!r}"
        for p in sorted(said_links.keys() | held_links.keys())
        if said_links.get(p) != held_links.get(p)
    ]
    if len(manifest.files) != len(said) or len(manifest.links) != len(said_links):
        problems.append("the manifest lists a path twice")
    if problems:
        raise DigestMismatch(
            f"the manifest of artifact {digest} ({path}) disagrees with its archive, which its digest covers: "
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""),
            hint="nothing was deployed; the manifest was edited or damaged: run the pipeline for the artifact's "
            "commit again (the build writes a true manifest), or promote an artifact that verifies",
        )


def _describe(entry: FileEntry | None) -> str:
    if entry is None:
        return "nothing"
    return f"sha256 {entry.sha256[:12]}, {entry.size} bytes, {'executable' if entry.executable else 'mode 644'}"
