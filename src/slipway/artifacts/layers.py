"""Dependency layers of ``artifact.cache`` on the local disk, next to the artifact store.

Layout, under ``.slipway/cache``::

    <cache>/keys/<key hex>.json     which layer the key names: its digest, paths, files, bytes (written last)
    <cache>/layers/<hex>.tar        a layer: the cache's paths as one build left them, a plain tar named by
                                    the sha256 of its bytes, written once (``0400``)
    <cache>/*/.tmp-<pid>-<random>   a layer or key being written (renamed into place only once complete)

A key file names a layer only once that layer is complete, so a reader never sees half a layer; a layer is
hashed again before every restore and one that no longer matches its name is dropped (the build then makes
it afresh). A cache keeps its ``keep`` most recently used keys (a restore counts as a use); a layer no kept
key names is removed, and so is a half-written file whose process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipway.artifacts.archive import check_member_path
from slipway.artifacts.store import PREFIX, parse_digest, sha256_file
from slipway.errors import ArtifactError, DigestMismatch, UnsafeArchive
from slipway.private import make_private_dir
from slipway.processes import ProcessId, is_dead, machine

TMP_PREFIX = ".tmp-"
#: tarfile's own guard against links that lead a later member outside ``dest`` (Python 3.11.4 and later;
#: before, the member names are still checked above).
_SAFE_EXTRACT: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}


@dataclass(frozen=True)
class Layer:
    """A stored layer: the key it was saved under, its own digest, and what it holds."""

    key: str
    digest: str
    paths: tuple[str, ...]
    files: int
    size: int


class LayerCache:
    """The layers of every ``artifact.cache`` of a project, one directory per cache."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _key_file(self, cache: str, key: str) -> Path:
        return self.root / cache / "keys" / f"{parse_digest(key)}.json"

    def _layer_file(self, cache: str, digest: str) -> Path:
        return self.root / cache / "layers" / f"{parse_digest(digest)}.tar"

    def _private(self, cache: str, part: str) -> Path:
        """``<root>/<cache>/<part>``, each level made ``0700`` (mkdir's parents would follow the umask)."""
        for path in (self.root, self.root / cache, self.root / cache / part):
            make_private_dir(path)
        return self.root / cache / part

    def lookup(self, cache: str, key: str) -> Layer | None:
        """The layer stored under ``key``, or None (never saved, pruned, or its key file unreadable)."""
        try:
            data = json.loads(self._key_file(cache, key).read_text())
            layer = Layer(key, data["digest"], tuple(data["paths"]), int(data["files"]), int(data["size"]))
            parse_digest(layer.digest)
        except (OSError, ValueError, KeyError, TypeError, ArtifactError):
            return None
        return layer if self._layer_file(cache, layer.digest).is_file() else None

    def restore(self, cache: str, layer: Layer, dest: Path) -> None:
        """Unpack ``layer`` into ``dest`` after checking its bytes; DigestMismatch or UnsafeArchive if it
        cannot be trusted (nothing outside the layer's paths is ever written)."""
        path = self._layer_file(cache, layer.digest)
        actual = sha256_file(path)
        if actual != layer.digest:
            raise DigestMismatch(f"layer {layer.digest} of cache {cache} hashes to {actual}")
        try:
            with tarfile.open(path, "r:") as tar:
                members = tar.getmembers()
                _check_members(members, layer)
                tar.extractall(dest, members=members, **_SAFE_EXTRACT)
        except (tarfile.TarError, OSError) as exc:
            raise ArtifactError(f"cannot unpack layer {layer.digest} of cache {cache}: {exc}") from exc
        with contextlib.suppress(OSError):
            os.utime(self._key_file(cache, layer.key))  # used: the last to be pruned

    def save(self, cache: str, key: str, base: Path, paths: tuple[str, ...]) -> Layer | None:
        """Store the ``paths`` of ``base`` that exist as one layer under ``key``; None when none exists."""
        present = tuple(p for p in paths if (base / p).exists() or (base / p).is_symlink())
        if not present:
            return None
        layers = self._private(cache, "layers")
        tmp = layers / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.tar"
        counted = {"files": 0, "size": 0}

        def count(info: tarfile.TarInfo) -> tarfile.TarInfo:
            counted["files"] += info.isfile()
            counted["size"] += info.size if info.isfile() else 0
            return info

        try:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for rel in present:
                    tar.add(base / rel, arcname=rel, recursive=True, filter=count)
            digest = sha256_file(tmp)
            final = self._layer_file(cache, digest)
            if final.is_file() and sha256_file(final) == digest:
                tmp.unlink()  # the same bytes are stored: written once
            else:
                os.chmod(tmp, 0o400)
                os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        layer = Layer(key, digest, present, counted["files"], counted["size"])
        self._write_key(cache, layer)
        return layer

    def _write_key(self, cache: str, layer: Layer) -> None:
        keys = self._private(cache, "keys")
        record = {"format": 1, "key": layer.key, "digest": layer.digest, "paths": list(layer.paths),
                  "files": layer.files, "size": layer.size, "saved_at": time.time()}
        tmp = keys / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.json"
        try:
            tmp.write_text(json.dumps(record, sort_keys=True))
            os.replace(tmp, self._key_file(cache, layer.key))
        finally:
            tmp.unlink(missing_ok=True)

    def forget(self, cache: str, layer: Layer) -> None:
        """Remove ``layer`` and its key (it no longer verifies)."""
        self._key_file(cache, layer.key).unlink(missing_ok=True)
        self._layer_file(cache, layer.digest).unlink(missing_ok=True)

    def prune(self, cache: str, *, keep: int) -> list[str]:
        """Keep the ``keep`` most recently used keys of ``cache`` and the layers they name; return what went."""
        keys_dir, layers_dir = self.root / cache / "keys", self.root / cache / "layers"
        removed = _remove_orphaned_tmp(keys_dir) + _remove_orphaned_tmp(layers_dir)
        keys = sorted(keys_dir.glob("*.json"), key=_mtime, reverse=True) if keys_dir.is_dir() else []
        for old in keys[keep:]:
            old.unlink(missing_ok=True)
            removed.append(f"key {PREFIX}{old.stem}")
        named = {layer.digest for layer in (self.lookup(cache, PREFIX + k.stem) for k in keys[:keep]) if layer}
        for path in sorted(layers_dir.glob("*.tar")) if layers_dir.is_dir() else []:
            if PREFIX + path.stem not in named:
                path.unlink(missing_ok=True)
                removed.append(f"layer {PREFIX}{path.stem}")
        return removed


def _check_members(members: list[tarfile.TarInfo], layer: Layer) -> None:
    """Every member lands inside the layer's paths: its name, a hard link's target, and no path through a
    symbolic link of the layer (a link may point anywhere; nothing is written through one)."""
    links: set[str] = set()

    def inside(name: str) -> bool:
        return any(name == p or name.startswith(p + "/") for p in layer.paths)

    for member in members:
        name = check_member_path(member.name)
        through = next((link for link in links if name.startswith(link + "/")), None)
        if not inside(name) or through is not None:
            raise UnsafeArchive(f"layer {layer.digest} holds {name!r}, outside its paths")
        if member.islnk() and not inside(check_member_path(member.linkname)):
            raise UnsafeArchive(f"layer {layer.digest} links {name!r} to {member.linkname!r}, outside its paths")
        if member.issym():
            links.add(name)
        elif not (member.isfile() or member.isdir() or member.islnk()):
            raise UnsafeArchive(f"layer {layer.digest} holds {name!r}, a {member.type!r} entry")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _remove_orphaned_tmp(directory: Path) -> list[str]:
    """Remove the ``.tmp-<pid>-...`` files of processes that are gone (a build killed while saving)."""
    removed = []
    for path in directory.glob(TMP_PREFIX + "*") if directory.is_dir() else []:
        pid = path.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and is_dead(ProcessId(int(pid), machine())):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed
