"""Faults injected into real hosts come back as the right TargetError, within bounded time."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest
from ssh_support import arun
from tests.support.pytest_ssh import BedFactory, target_for
from tests.support.sshbed import SSHTestBed
from tests.support.sshsystem import generate_key

from slipway.errors import AuthenticationFailed, CommandTimeout, HostUnreachable, TargetError

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(60)]


def test_a_killed_host_is_unreachable(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host, connect_timeout=5) as target:
            assert (await target.run("echo up")).stdout == "up\n"
            bed.kill(host)
            started = time.monotonic()
            with pytest.raises(HostUnreachable, match="refused the connection") as info:
                await target.run("echo down")
            assert time.monotonic() - started < 2
            assert info.value.host == host.name

    arun(main())


def test_a_restarted_host_is_reconnected_and_kept_its_disk(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            await target.put(b"kept", "/srv/state")
            bed.restart(host)
            assert await target.read("/srv/state") == b"kept"
            assert target.connections_opened == 2

    arun(main())


def test_losing_the_connection_mid_command_is_a_target_error(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            started = asyncio.Event()
            running = asyncio.create_task(
                target.run("echo started; sleep 30", timeout=20, on_output=lambda _s, _l: started.set())
            )
            async with asyncio.timeout(10):
                await started.wait()
            bed.kill(host)
            with pytest.raises(TargetError, match="connection lost while running") as info:
                await running
            assert type(info.value) is TargetError
            assert "may or may not have completed" in info.value.hint

    arun(main())


def test_a_blocked_host_is_unreachable_within_the_connect_timeout(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]
    bed.block(host)

    async def main() -> None:
        async with target_for(host, connect_timeout=2) as target:
            started = time.monotonic()
            with pytest.raises(HostUnreachable, match="did not answer within 2s"):
                await target.run("true")
            assert 1.5 < time.monotonic() - started < 4
        bed.unblock(host)
        async with target_for(host, connect_timeout=2) as target:
            assert (await target.run("echo back")).stdout == "back\n"

    arun(main())


def test_a_wrong_client_key_is_an_authentication_failure(ssh_testbed: BedFactory, tmp_path: Path) -> None:
    bed = ssh_testbed(1)
    stranger = tmp_path / "stranger"
    generate_key(stranger)

    async def main() -> None:
        async with target_for(bed.hosts[0], client_keys=[stranger], connect_timeout=5) as target:
            with pytest.raises(AuthenticationFailed, match="refused our key") as info:
                await target.run("true")
            assert "authorized_keys" in info.value.hint

    arun(main())


def test_without_explicit_keys_the_default_home_keys_are_used(
    shared_bed: SSHTestBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = shared_bed.hosts[0]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(host.client_key, home / ".ssh" / "id_ed25519")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    async def main() -> None:
        async with target_for(host, client_keys=()) as target:
            assert (await target.run("echo via-home-key")).stdout == "via-home-key\n"
        (home / ".ssh" / "id_ed25519").unlink()
        async with target_for(host, client_keys=(), connect_timeout=5) as target:
            with pytest.raises(AuthenticationFailed):
                await target.run("true")

    arun(main())


def test_a_paused_host_times_out_on_connect_and_mid_command(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(2)
    fresh, busy = bed.hosts

    async def main() -> None:
        bed.pause(fresh)
        async with target_for(fresh, connect_timeout=2) as target:
            started = time.monotonic()
            with pytest.raises(HostUnreachable, match="did not answer within 2s"):
                await target.run("true")
            assert time.monotonic() - started < 4
        bed.resume(fresh)

        async with target_for(busy, connect_timeout=2, kill_timeout=1) as target:
            began = asyncio.Event()
            running = asyncio.create_task(
                target.run("echo started; sleep 30", timeout=2, on_output=lambda _s, _l: began.set())
            )
            async with asyncio.timeout(10):
                await began.wait()
            bed.pause(busy)
            started = time.monotonic()
            with pytest.raises(CommandTimeout, match="timed out after 2s"):
                await running
            assert time.monotonic() - started < 5
            bed.resume(busy)
            assert (await target.run("echo resumed")).stdout == "resumed\n"  # over a new connection
            assert target.connections_opened == 2

    arun(main())


def test_a_full_disk_makes_put_fail_clearly_and_keeps_the_old_file(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, disk_size=16 * 1024 * 1024)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            await target.put(b"version 1", "/srv/app/config")
            bed.fill_disk(host)
            no_space = r"cannot write /srv/app/config: .*No space left on device"
            with pytest.raises(TargetError, match=no_space) as info:
                await target.put(b"x" * 65536, "/srv/app/config")
            assert info.value.host == host.name and info.value.command_exit_code
            assert await target.read("/srv/app/config") == b"version 1"
            assert (await target.run("ls -A /srv/app")).stdout == "config\n"  # the temp file was removed
            bed.restore_disk(host)
            await target.put(b"x" * 65536, "/srv/app/config")
            assert await target.read("/srv/app/config") == b"x" * 65536

    arun(main())


def test_a_paused_host_with_an_open_connection_refuses_new_sessions(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host, connect_timeout=2) as target:
            assert (await target.run("echo up")).stdout == "up\n"
            bed.pause(host)
            started = time.monotonic()
            # The connection's shell is open: the host does not say "go" for the command within 2 s
            with pytest.raises(HostUnreachable, match="did not answer within 2s: nothing was run"):
                await target.run("true", timeout=30)
            assert time.monotonic() - started < 4
            bed.resume(host)
            assert (await target.run("echo again")).stdout == "again\n"

    arun(main())
