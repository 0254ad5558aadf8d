"""The release layout on a local target: complete releases only, atomic switch, content-addressed sends."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from slipway.artifacts.archive import LinkEntry, Manifest, build_archive, collect_files
from slipway.artifacts.store import LocalArtifactStore
from slipway.errors import CommandFailed, CommandTimeout, UnsafeArchive
from slipway.targets import release as layout
from slipway.targets.local import LocalTarget


def artifact(tmp_path: Path, files: dict[str, bytes], name: str) -> tuple[LocalArtifactStore, Manifest]:
    src = tmp_path / f"src-{name}"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    store = LocalArtifactStore(tmp_path / "store")
    out = tmp_path / f"{name}.tgz"
    with out.open("wb") as fh:
        manifest = build_archive(src, collect_files(src, ["."], []), fh, project="p", commit=name * 8, built_at=0)
    return store, store.add(out, manifest)


def source_for(store: LocalArtifactStore, manifest: Manifest) -> layout.ObjectSource:
    async def source(wanted: set[str]) -> dict[str, bytes]:
        return store.read_objects(manifest.digest, wanted)

    return source


def host_target(tmp_path: Path, hasher: str) -> LocalTarget:
    """A local host that verifies contents with openssl, or one without openssl (sha256sum instead)."""
    if hasher == "openssl":
        assert shutil.which("openssl"), "the test machine has openssl"
        return LocalTarget("h", tmp_path / "host")
    tools = tmp_path / "bin-without-openssl"
    tools.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(directory).iterdir():
            if tool.name != "openssl" and not (tools / tool.name).exists():
                (tools / tool.name).symlink_to(tool)
    return LocalTarget("h", tmp_path / "host", base_env={**os.environ, "PATH": str(tools)})


HASHERS = pytest.mark.parametrize("hasher", ["openssl", "sha256sum"])


@HASHERS
def test_install_switch_and_reinstall_send_only_what_is_missing(tmp_path: Path, hasher: str) -> None:
    files = {f"app/f{i:03}.txt": os.urandom(1000) for i in range(100)}
    store, m1 = artifact(tmp_path, files, "a")
    files["app/f000.txt"] = os.urandom(1000)  # 1% of the files change
    store, m2 = artifact(tmp_path, files, "b")
    target = host_target(tmp_path, hasher)

    async def scenario() -> None:
        first = await layout.install_release(target, m1, "r1", source_for(store, m1))
        assert (first.objects_sent, first.bytes_sent) == (100, 100_000)
        await layout.switch_current(target, "r1")
        again = await layout.install_release(target, m1, "r1", source_for(store, m1))
        assert again.already_installed and again.bytes_sent == 0
        second = await layout.install_release(target, m2, "r2", source_for(store, m2))
        assert (second.objects_sent, second.bytes_sent) == (1, 1000)
        await layout.switch_current(target, "r2")
        assert await layout.current_release(target) == "r2"

    asyncio.run(scenario())
    assert (tmp_path / "host/current/app/f000.txt").read_bytes() == files["app/f000.txt"]
    assert os.readlink(tmp_path / "host/current") == "releases/r2"


def test_a_failed_build_leaves_no_release_and_current_untouched(tmp_path: Path) -> None:
    store, m1 = artifact(tmp_path, {"a.txt": b"one"}, "a")
    _, m2 = artifact(tmp_path, {"a.txt": b"two", "b.txt": b"three"}, "b")
    target = LocalTarget("h", tmp_path / "host")

    async def scenario() -> None:
        await layout.install_release(target, m1, "r1", source_for(store, m1))
        await layout.switch_current(target, "r1")
        # Build r2 without uploading its contents: the hard links cannot be made.
        with pytest.raises(CommandFailed):
            await layout.build_release(target, m2, "r2", (), timeout=30)
        with pytest.raises(CommandFailed, match="not complete"):
            await layout.switch_current(target, "r2")

    asyncio.run(scenario())
    assert not (tmp_path / "host/releases/r2").exists()
    assert not (tmp_path / "host/releases/r2.partial").exists()
    assert os.readlink(tmp_path / "host/current") == "releases/r1"


@HASHERS
def test_an_object_whose_hash_does_not_match_is_refused(tmp_path: Path, hasher: str) -> None:
    _store, m1 = artifact(tmp_path, {"a.txt": b"one"}, "a")
    target = host_target(tmp_path, hasher)

    async def lying_source(wanted: set[str]) -> dict[str, bytes]:
        return {sha: b"not what the manifest says" for sha in wanted}

    async def scenario() -> None:
        [entry] = m1.files
        with pytest.raises(CommandFailed, match=f"bad object {entry.object_name}"):
            await layout.install_release(target, m1, "r1", lying_source)

    asyncio.run(scenario())
    assert list((tmp_path / "host/.slipway/objects").iterdir()) == []
    assert not (tmp_path / "host/releases/r1").exists()


def test_shared_directories_are_linked_and_persist(tmp_path: Path) -> None:
    store, m1 = artifact(tmp_path, {"app/x.py": b"x"}, "a")
    target = LocalTarget("h", tmp_path / "host")

    async def scenario() -> None:
        await layout.install_release(target, m1, "r1", source_for(store, m1), shared=["data", "log/app"])

    asyncio.run(scenario())
    release = tmp_path / "host/releases/r1"
    assert os.readlink(release / "data") == "../../shared/data"
    assert os.readlink(release / "log/app") == "../../../shared/log/app"
    (release / "data/db").write_text("kept")
    assert (tmp_path / "host/shared/data/db").read_text() == "kept"


def test_prune_keeps_the_newest_and_protected_releases_and_collects_objects(tmp_path: Path) -> None:
    target = LocalTarget("h", tmp_path / "host")

    async def scenario() -> list[str]:
        for i in range(5):
            store, m = artifact(tmp_path, {"a.txt": f"v{i}".encode()}, f"v{i}")
            await layout.install_release(target, m, f"r{i}", source_for(store, m))
        return await layout.prune_releases(target, 2, ["r0"])

    removed = asyncio.run(scenario())
    assert removed == ["r1", "r2"]
    assert sorted(p.name for p in (tmp_path / "host/releases").iterdir()) == ["r0", "r3", "r4"]
    assert len(list((tmp_path / "host/.slipway/objects").iterdir())) == 3


def test_release_ids_cannot_be_paths() -> None:
    for bad in ("../x", "a/b", "", ".hidden", "a b"):
        with pytest.raises(Exception, match="invalid release id"):
            layout.validate_release_id(bad)


def test_local_commands_stream_time_out_and_see_quoted_env(tmp_path: Path) -> None:
    target = LocalTarget("h", tmp_path)
    lines: list[tuple[str, str]] = []

    async def scenario() -> None:
        res = await target.run(
            'echo one; echo two >&2; printf %s "$V"',
            env={"V": "a 'b' $(c)"},
            on_output=lambda s, line: lines.append((s, line)),
        )
        assert res.ok and res.stdout.endswith("a 'b' $(c)")
        with pytest.raises(CommandTimeout):
            await target.run("sleep 5", timeout=0.3)

    asyncio.run(scenario())
    assert ("stdout", "one") in lines and ("stderr", "two") in lines


@pytest.mark.parametrize("target", ["/etc", "../../../outside", "../.."])
def test_every_link_is_checked_whatever_the_manifest_says(tmp_path: Path, target: str) -> None:
    """The release builder checks each link itself: a manifest is not trusted to have been checked."""
    store, good = artifact(tmp_path, {"app/a.txt": b"a"}, "a")
    bad = Manifest(
        project="p", commit="c", built_at=0, files=good.files, links=(LinkEntry("app/l", target),), digest=good.digest
    )
    with pytest.raises(UnsafeArchive, match="app/l"):
        layout.link_tar(bad, "r1", ())
    host = LocalTarget("h", tmp_path / "host")
    with pytest.raises(UnsafeArchive):
        asyncio.run(layout.install_release(host, bad, "r1", source_for(store, good)))
    assert not (tmp_path / "host").exists()  # refused before the host was touched
    with pytest.raises(UnsafeArchive):
        asyncio.run(layout.build_release(host, bad, "r1", (), timeout=30))
    assert not (tmp_path / "host").exists()


def test_the_marker_names_the_release_commit_and_the_artifact_commit(tmp_path: Path) -> None:
    store, manifest = artifact(tmp_path, {"app/a.txt": b"a"}, "a")
    host = LocalTarget("h", tmp_path / "host")
    marker = layout.Marker(commit="2" * 40, artifact_commit="1" * 40)
    asyncio.run(layout.install_release(host, manifest, "r1", source_for(store, manifest), marker=marker))
    data = json.loads((tmp_path / "host/releases/r1" / layout.MARKER).read_text())
    assert data == {"release": "r1", "digest": manifest.digest, "commit": "2" * 40, "artifact_commit": "1" * 40}


def test_a_release_directory_of_another_artifact_is_not_taken_for_the_release(tmp_path: Path) -> None:
    """The release id names its artifact by 12 hex digits only: the marker must name the whole digest."""
    store, one = artifact(tmp_path, {"app/a.txt": b"one"}, "a")
    _, two = artifact(tmp_path, {"app/a.txt": b"two"}, "b")
    host = LocalTarget("h", tmp_path / "host")
    asyncio.run(layout.install_release(host, one, "r1", source_for(store, one)))
    assert asyncio.run(layout.release_exists(host, "r1", digest=one.digest))
    assert not asyncio.run(layout.release_exists(host, "r1", digest=two.digest))
    with pytest.raises(CommandFailed):  # never reported as "already installed"
        asyncio.run(layout.install_release(host, two, "r1", source_for(store, two)))
    assert (tmp_path / "host/releases/r1/app/a.txt").read_bytes() == b"one"
