"""Artifacts: same inputs, same digest; unsafe archives refused; a tampered artifact is never used."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slipway.artifacts.archive import Manifest, build_archive, collect_files, iter_archive
from slipway.artifacts.store import LocalArtifactStore, sha256_file
from slipway.errors import ArtifactError, ArtifactNotFound, DigestMismatch, UnsafeArchive


def make_tree(base: Path) -> None:
    (base / "app/sub").mkdir(parents=True)
    (base / "app/a.py").write_text("print('a')\n")
    (base / "app/sub/run.sh").write_text("#!/bin/sh\necho hi\n")
    (base / "app/sub/run.sh").chmod(0o755)
    (base / "app/__pycache__").mkdir()
    (base / "app/__pycache__/a.cpython-311.pyc").write_bytes(b"junk")
    os.symlink("a.py", base / "app/alias.py")


def build(base: Path, out: Path, built_at: float = 1.0) -> Manifest:
    files = collect_files(base, ["app"], ["**/__pycache__", "**/*.pyc"])
    with out.open("wb") as fh:
        return build_archive(base, files, fh, project="p", commit="c" * 40, built_at=built_at)


def test_same_inputs_give_the_same_digest(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    make_tree(one)
    make_tree(two)
    # Different mtimes, build times and directory names must not change the bytes.
    os.utime(two / "app/a.py", (12345, 12345))
    m1 = build(one, tmp_path / "1.tgz", built_at=time.time())
    m2 = build(two, tmp_path / "2.tgz", built_at=time.time() + 100)
    assert sha256_file(tmp_path / "1.tgz") == sha256_file(tmp_path / "2.tgz")
    assert [f.path for f in m1.files] == ["app/a.py", "app/sub/run.sh"]
    assert m1.files == m2.files
    assert [link.path for link in m1.links] == ["app/alias.py"]
    assert next(f for f in m1.files if f.path == "app/sub/run.sh").executable


def test_a_changed_file_changes_the_digest(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    build(tmp_path / "t", tmp_path / "1.tgz")
    (tmp_path / "t/app/a.py").write_text("print('b')\n")
    build(tmp_path / "t", tmp_path / "2.tgz")
    assert sha256_file(tmp_path / "1.tgz") != sha256_file(tmp_path / "2.tgz")


def test_archive_entries_are_sorted_with_fixed_owner_and_mtime(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    build(tmp_path / "t", tmp_path / "a.tgz")
    with tarfile.open(tmp_path / "a.tgz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_a_path_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="matches nothing"):
        collect_files(tmp_path, ["nope"], [])


def evil_archive(path: Path, name: str, *, link: str | None = None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))


@pytest.mark.parametrize(
    ("name", "link"),
    [("../escape.txt", None), ("/etc/passwd", None), ("a/../../x", None), ("app/l", "../../etc"), ("app/l", "/etc")],
)
def test_path_traversal_is_refused(tmp_path: Path, name: str, link: str | None) -> None:
    evil_archive(tmp_path / "evil.tgz", name, link=link)
    with pytest.raises(UnsafeArchive):
        list(iter_archive(tmp_path / "evil.tgz"))


def test_store_verifies_the_digest_on_every_fetch(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    manifest = build(tmp_path / "t", tmp_path / "a.tgz")
    store = LocalArtifactStore(tmp_path / "store")
    stored = store.add(tmp_path / "a.tgz", manifest)
    assert store.fetch(stored.digest).is_file()
    assert store.manifest(stored.digest).files == manifest.files
    archive = store.fetch(stored.digest)
    archive.chmod(0o644)
    data = bytearray(archive.read_bytes())
    data[-5] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match="tampered"):
        store.fetch(stored.digest)


def test_store_is_write_once(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    store = LocalArtifactStore(tmp_path / "store")
    first = store.add(tmp_path / "a.tgz", build(tmp_path / "t", tmp_path / "a.tgz", built_at=1.0))
    again = store.add(tmp_path / "b.tgz", build(tmp_path / "t", tmp_path / "b.tgz", built_at=2.0))
    assert again.digest == first.digest and again.built_at == 1.0


def test_unknown_digest_is_not_found(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFound):
        store.fetch("sha256:" + "ab" * 32)
    with pytest.raises(ArtifactError, match="not an artifact digest"):
        store.fetch("sha256:xyz")


def stored_artifact(tmp_path: Path) -> tuple[LocalArtifactStore, Manifest]:
    make_tree(tmp_path / "t")
    store = LocalArtifactStore(tmp_path / "store")
    return store, store.add(tmp_path / "a.tgz", build(tmp_path / "t", tmp_path / "a.tgz"))


def edit_manifest(store: LocalArtifactStore, digest: str, edit: Callable[[dict[str, Any]], None]) -> None:
    [path] = (store.root / "sha256").glob("*.manifest.json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["links"].append(["app/etc", "/etc"]),
        lambda m: m["links"].append(["app/up", "../../x"]),
        lambda m: m["links"].__setitem__(0, ["app/alias.py", "sub/run.sh"]),
        lambda m: m["files"][0].__setitem__(1, m["files"][1][1]),  # a.py gets run.sh's content
        lambda m: m["files"][0].__setitem__(3, True),  # a.py becomes executable
        lambda m: m["files"].pop(),  # a file is dropped
        lambda m: m["files"].append(["app/extra", "0" * 64, 1, False]),
    ],
    ids=["absolute-link", "escaping-link", "retargeted-link", "swapped-content", "mode", "dropped", "added"],
)
def test_a_manifest_that_disagrees_with_its_archive_is_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    store, stored = stored_artifact(tmp_path)
    assert store.manifest(stored.digest).files == stored.files  # verifies, and is remembered
    edit_manifest(store, stored.digest, edit)
    with pytest.raises(DigestMismatch, match="disagrees with its archive"):
        store.manifest(stored.digest)


def test_an_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    store, stored = stored_artifact(tmp_path)
    [path] = (store.root / "sha256").glob("*.manifest.json")
    path.write_text("{not json")
    with pytest.raises(DigestMismatch, match="cannot be read"):
        store.manifest(stored.digest)


def test_the_manifest_digest_field_is_the_verified_digest(tmp_path: Path) -> None:
    store, stored = stored_artifact(tmp_path)
    edit_manifest(store, stored.digest, lambda m: m.__setitem__("digest", "sha256:" + "0" * 64))
    assert store.manifest(stored.digest).digest == stored.digest


def test_a_rebuild_repairs_a_damaged_archive_and_manifest(tmp_path: Path) -> None:
    store, stored = stored_artifact(tmp_path)
    edit_manifest(store, stored.digest, lambda m: m["links"].append(["app/etc", "/etc"]))
    again = store.add(tmp_path / "b.tgz", build(tmp_path / "t", tmp_path / "b.tgz"))
    assert again.links == stored.links and store.manifest(stored.digest).links == stored.links
    archive = store.fetch(stored.digest)
    archive.chmod(0o644)
    archive.write_bytes(b"garbage")
    with pytest.raises(DigestMismatch, match="tampered"):
        store.manifest(stored.digest)
    store.add(tmp_path / "c.tgz", build(tmp_path / "t", tmp_path / "c.tgz"))
    assert store.manifest(stored.digest).files == stored.files


def test_unpacking_over_a_workspace_replaces_what_is_in_the_way_and_never_writes_outside(tmp_path: Path) -> None:
    """Test stages run with the artifact unpacked over the commit's export (issue 15): a link in the way
    (here one to a directory outside) is replaced, never written through; the bytes are the artifact's."""
    from slipway.artifacts.store import unpack_into

    src = tmp_path / "src"
    make_tree(src)
    manifest = build(src, tmp_path / "a.tgz")
    store = LocalArtifactStore(tmp_path / "store")
    stored = store.add(tmp_path / "a.tgz", manifest)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "ws"
    (dest / "app").mkdir(parents=True)
    (dest / "app/sub").symlink_to(outside)  # the export has a link where the artifact has a directory
    (dest / "app/a.py").write_text("the export's older copy\n")
    (dest / "tests").mkdir()
    (dest / "tests/test_a.py").write_text("kept\n")  # not in the artifact: left alone
    unpack_into(store, stored.digest, dest)
    assert not (dest / "app/sub").is_symlink() and (dest / "app/sub/run.sh").read_text() == "#!/bin/sh\necho hi\n"
    assert os.access(dest / "app/sub/run.sh", os.X_OK) and list(outside.iterdir()) == []
    assert (dest / "app/a.py").read_text() == "print('a')\n" and os.readlink(dest / "app/alias.py") == "a.py"
    assert (dest / "tests/test_a.py").read_text() == "kept\n"


def test_an_absolute_link_in_the_build_says_what_to_do(tmp_path: Path) -> None:
    """Issue 15: 'python3 -m venv' in a build failed with "points to absolute path" and no hint."""
    (tmp_path / "app/.venv/bin").mkdir(parents=True)
    os.symlink("/usr/bin/python3", tmp_path / "app/.venv/bin/python3")
    with pytest.raises(UnsafeArchive) as venv:
        build(tmp_path, tmp_path / "a.tgz")
    assert "points to absolute path" in venv.value.message and "wheelhouse" in venv.value.hint
    assert "--no-index" in venv.value.hint
    os.unlink(tmp_path / "app/.venv/bin/python3")
    os.symlink("/etc/hosts", tmp_path / "app/hosts")
    with pytest.raises(UnsafeArchive) as other:
        build(tmp_path, tmp_path / "b.tgz")
    assert "make the link relative" in other.value.hint and "artifact.exclude" in other.value.hint
