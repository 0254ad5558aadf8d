"""A content-addressed artifact store in a local directory.

Layout: ``<root>/sha256/<hex>.tar.gz`` and ``<root>/sha256/<hex>.manifest.json``. An artifact is written
once and never replaced. Every fetch hashes the bytes again: a tampered archive is refused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from slipway.artifacts.archive import CHUNK, Manifest, iter_archive
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

    def _archive(self, hexpart: str) -> Path:
        return self.root / "sha256" / f"{hexpart}.tar.gz"

    def _manifest(self, hexpart: str) -> Path:
        return self.root / "sha256" / f"{hexpart}.manifest.json"

    def add(self, archive: Path, manifest: Manifest) -> Manifest:
        """Move ``archive`` into the store under its digest; return the manifest with the digest set."""
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
        if target.exists():
            archive.unlink()  # same bytes are already stored: immutable, keep the first
            if self._manifest(hexpart).exists():
                return self.manifest(digest)
        else:
            os.chmod(archive, 0o400)  # immutable, and private like the rest of the store
            shutil.move(str(archive), target)
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
        hexpart = parse_digest(digest)
        path = self._archive(hexpart)
        if not path.is_file():
            raise ArtifactNotFound(
                f"artifact {PREFIX}{hexpart} is not in the artifact store at {self.root}",
                hint="'slipway history' lists the artifacts that were built; run the pipeline to build one",
            )
        actual = sha256_file(path)
        if actual != PREFIX + hexpart:
            raise DigestMismatch(
                f"artifact {PREFIX}{hexpart} is corrupt or was tampered with: its bytes hash to {actual}",
                hint="nothing was deployed; rebuild it by running the pipeline for its commit",
            )
        return path

    def manifest(self, digest: str) -> Manifest:
        """The manifest stored with the artifact."""
        hexpart = parse_digest(digest)
        path = self._manifest(hexpart)
        if not path.is_file():
            raise ArtifactNotFound(f"artifact {PREFIX}{hexpart} has no manifest in {self.root}")
        return Manifest.from_json(path.read_text())

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
