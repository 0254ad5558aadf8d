"""The release layout through FakeTarget: what it asks of a host, and how it takes a host's failures.

No patching: the fake host runs the layout's shell for real in a temporary root, records every call,
and answers chosen commands with a failure or a lost connection.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from slipway.errors import CommandFailed, HostUnreachable
from slipway.targets import release as layout
from slipway.testing import FakeTarget
from tests.core.test_release import artifact, source_for

pytestmark = pytest.mark.timeout(60)


def test_reinstalling_an_installed_release_sends_nothing_and_builds_nothing(tmp_path: Path) -> None:
    store, manifest = artifact(tmp_path, {"app/a.txt": b"a", "app/b.txt": b"b"}, "a")
    host = FakeTarget("web-1", tmp_path / "host")
    asyncio.run(layout.install_release(host, manifest, "r1", source_for(store, manifest)))
    first = list(host.calls)
    # two round trips: the layout and the names it may lack; then a tar of those and a tar of links
    assert len(first) == 2 and all(call.stdin for call in first), host.commands
    host.calls.clear()

    again = asyncio.run(layout.install_release(host, manifest, "r1", source_for(store, manifest)))
    assert again.already_installed and again.bytes_sent == 0
    assert len(host.commands) == 1, host.commands  # make the directories, find the release: nothing else


def test_a_failed_switch_raises_with_the_hosts_evidence_and_current_stays(tmp_path: Path) -> None:
    host = FakeTarget("web-1", tmp_path / "host")
    for name in ("r1", "r2"):
        store, manifest = artifact(tmp_path, {"app/a.txt": name.encode()}, name)
        asyncio.run(layout.install_release(host, manifest, name, source_for(store, manifest)))
    asyncio.run(layout.switch_current(host, "r1"))
    host.respond("mv -Tf current.tmp current", exit_code=1, stderr="mv: cannot move: No space left on device\n")

    with pytest.raises(CommandFailed, match="cannot switch current to r2") as info:
        asyncio.run(layout.switch_current(host, "r2"))
    assert (info.value.host, info.value.command_exit_code) == ("web-1", 1)
    assert "No space left on device" in info.value.stderr_tail
    assert asyncio.run(layout.current_release(host)) == "r1"
    assert os.readlink(tmp_path / "host/current") == "releases/r1"


def test_a_host_lost_while_the_release_is_built_leaves_no_release(tmp_path: Path) -> None:
    store, manifest = artifact(tmp_path, {"app/a.txt": b"a"}, "a")
    host = FakeTarget("web-1", tmp_path / "host")
    host.respond("tar -x", error=HostUnreachable("connection lost", host="web-1"))

    with pytest.raises(HostUnreachable):
        asyncio.run(layout.install_release(host, manifest, "r1", source_for(store, manifest)))
    assert not asyncio.run(layout.release_exists(host, "r1"))
    assert not (tmp_path / "host/releases/r1").exists()
    with pytest.raises(CommandFailed, match="not complete"):
        asyncio.run(layout.switch_current(host, "r1"))


def test_prune_that_cannot_remove_a_release_says_so_instead_of_reporting_it_removed(tmp_path: Path) -> None:
    host = FakeTarget("web-1", tmp_path / "host")
    for i in range(3):
        store, manifest = artifact(tmp_path, {"a.txt": f"v{i}".encode()}, f"v{i}")
        asyncio.run(layout.install_release(host, manifest, f"r{i}", source_for(store, manifest)))
    host.respond("rm -rf -- ", exit_code=1, stderr="rm: cannot remove 'releases/r0/a.txt': Read-only file system\n")

    with pytest.raises(CommandFailed, match="Read-only file system") as info:
        asyncio.run(layout.prune_releases(host, 1, []))
    assert info.value.host == "web-1"
    assert sorted(p.name for p in (tmp_path / "host/releases").iterdir()) == ["r0", "r1", "r2"]


def test_one_look_says_what_runs_and_what_the_next_release_lacks_and_the_install_then_needs_one_command(
    tmp_path: Path,
) -> None:
    host = FakeTarget("web-1", tmp_path / "host")
    empty = asyncio.run(layout.look_before_install(host, artifact(tmp_path, {"a.txt": b"a"}, "e")[1], "r0"))
    assert empty.current is None and empty.missing is not None and len(empty.missing) == 1
    assert (tmp_path / "host/.slipway/objects").is_dir()  # the look made the layout

    store, one = artifact(tmp_path, {"app/a.txt": b"a", "app/b.txt": b"b", "app/c.txt": b"c"}, "one")
    asyncio.run(layout.install_release(host, one, "r1", source_for(store, one)))
    asyncio.run(layout.switch_current(host, "r1"))
    store, two = artifact(tmp_path, {"app/a.txt": b"a", "app/b.txt": b"b", "app/c.txt": b"changed"}, "two")
    host.calls.clear()

    look = asyncio.run(layout.look_before_install(host, two, "r2"))
    changed = next(f.object_name for f in two.files if f.path == "app/c.txt")
    assert look == layout.HostLook("r1", frozenset({changed})), look
    assert [c.contained for c in host.calls] == [True]

    host.calls.clear()
    stats = asyncio.run(layout.install_release(host, two, "r2", source_for(store, two), looked=look))
    assert (stats.objects_sent, stats.bytes_sent) == (1, len(b"changed"))
    assert len(host.calls) == 1 and host.calls[0].contained, host.commands  # upload and build, in one
    assert (tmp_path / "host/releases/r2/app/c.txt").read_bytes() == b"changed"

    again = asyncio.run(layout.look_before_install(host, two, "r2"))
    assert again == layout.HostLook("r1", None)  # installed: nothing is listed


def test_a_fleet_shares_one_link_tar_and_one_upload_built_once(tmp_path: Path) -> None:
    store, manifest = artifact(tmp_path, {"app/a.txt": b"a", "app/b.txt": b"b"}, "a")
    cache = layout.ObjectCache(manifest, source_for(store, manifest))
    hosts = [FakeTarget(f"web-{i}", tmp_path / f"host{i}") for i in range(3)]
    for host in hosts:
        asyncio.run(layout.install_release(host, manifest, "r1", cache))
    uploads = [call.stdin for host in hosts for call in host.calls[1:]]
    assert len(uploads) == 3 and uploads[0] is uploads[1] is uploads[2]  # one payload object, sent three times
    assert cache.links("r1", [], None) is cache.links("r1", [], None)
    assert all((tmp_path / f"host{i}/releases/r1/app/b.txt").read_bytes() == b"b" for i in range(3))
