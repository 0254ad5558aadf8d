"""The long-lived shell behind SSHTarget: one login shell for many commands, and every guarantee of a
channel per command kept (exact output, stdin, exit codes, timeouts that kill, daemons that linger)."""

from __future__ import annotations

import asyncio
import time

import pytest
from ssh_support import arun
from tests.support.pytest_ssh import BedFactory, target_for

from slipway.errors import CommandTimeout, TargetError

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


def test_many_commands_uploads_and_reads_pay_one_login_shell(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, heavy_shell=2000)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            for i in range(5):
                assert (await target.run(f"echo {i}")).stdout == f"{i}\n"
            await target.put(b"\x00binary\nno newline", "/srv/app/blob")
            assert await target.read("/srv/app/blob") == b"\x00binary\nno newline"
            assert target.shells_opened == 1 and target.channels_opened == 0

    arun(main())
    assert bed.logins() == {host.name: 1}


def test_without_the_shell_each_command_pays_its_login(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, heavy_shell=2000)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host, persistent_shell=False) as target:
            for i in range(3):
                assert (await target.run(f"echo {i}")).stdout == f"{i}\n"
            assert target.shells_opened == 0 and target.channels_opened == 3

    arun(main())
    assert bed.logins() == {host.name: 3}


def test_a_timed_out_command_is_killed_and_the_shell_goes_on(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, heavy_shell=2000)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            marker = "/srv/app/still-running"
            with pytest.raises(CommandTimeout, match="timed out after 1s"):
                await target.run(f"mkdir -p /srv/app; (sleep 3; touch {marker}) & sleep 30", timeout=1)
            await asyncio.sleep(3.5)
            # the whole process group went: the background child never touched its file
            assert (await target.run(f"test -e {marker}")).exit_code == 1
            assert (await target.run("echo after")).stdout == "after\n"
            assert target.shells_opened == 1 and target.channels_opened == 1  # the kill's own channel

    arun(main())
    assert bed.logins() == {host.name: 2}


def test_output_a_daemon_writes_later_never_reaches_another_command(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            started = time.monotonic()
            first = await target.run("(sleep 2; echo late; echo late >&2) & echo now")
            assert first.stdout == "now\n" and first.stderr == ""
            assert time.monotonic() - started < 1.9  # the relays were stopped after their grace
            await asyncio.sleep(2)
            second = await target.run("echo mine")
            assert (second.stdout, second.stderr) == ("mine\n", "")

    arun(main())


def test_stdin_a_command_does_not_read_is_drained(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            data = b"x" * 300_000
            partial = await target.run("head -c 3", stdin=data)
            assert partial.stdout == "xxx" and partial.ok
            ignored = await target.run("echo ignored", stdin=data)
            assert ignored.stdout == "ignored\n"
            counted = await target.run("wc -c", stdin=data)
            assert counted.stdout.strip() == "300000"

    arun(main())


def test_commands_at_once_get_shells_of_their_own(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]

    async def main() -> None:
        async with target_for(host) as target:
            results = await asyncio.gather(*(target.run(f"sleep 0.5; echo {i}") for i in range(3)))
            assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
            assert target.shells_opened == 3
            more = await asyncio.gather(*(target.run(f"echo {i}") for i in range(3)))
            assert [r.stdout for r in more] == ["0\n", "1\n", "2\n"]
            assert target.shells_opened == 3  # reused

    arun(main())


def test_a_login_shell_that_exits_is_reported_with_what_it_said(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, heavy_shell=0)
    host = bed.hosts[0]
    (bed.home / ".bashrc").write_text("echo 'this account is locked'\nexit 3\n")

    async def main() -> None:
        async with target_for(host) as target:
            with pytest.raises(TargetError, match="login shell of root exited before running anything: "
                               "this account is locked") as info:
                await target.run("true")
            assert "bashrc" in (info.value.hint or "")

    arun(main())


def test_a_contained_command_writes_straight_to_the_shell_and_keeps_every_guarantee(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, heavy_shell=2000)
    host = bed.hosts[0]
    # The command's stdout, and the commands its shell's parent runs besides it (the relays, if any).
    look = "readlink /proc/$$/fd/1; for p in /proc/[0-9]*; do grep -qx \"PPid:\t$PPID\" $p/status 2>/dev/null && " \
        "cat $p/comm; done; true"

    async def main() -> None:
        async with target_for(host) as target:
            relayed = await target.run(look)
            assert "slipway-shell." in relayed.stdout and relayed.stdout.count("cat\n") == 2, relayed.stdout
            straight = await target.run(look, contained=True)
            assert "slipway-shell." not in straight.stdout and "cat\n" not in straight.stdout, straight.stdout

            # exact output on both streams, exit codes, and an exit 143 that is no SIGTERM
            both = await target.run("printf 'out'; printf 'err\\n\\n' >&2; exit 3", contained=True)
            assert (both.stdout, both.stderr, both.exit_code) == ("out", "err\n\n", 3)
            assert (await target.run("exit 143", contained=True)).exit_code == 143
            assert (await target.run("kill -TERM $$", contained=True)).exit_code == -15
            # exact stdin, drained when not read: the next command is not fed the rest
            data = b"y" * 300_000
            assert (await target.run("head -c 3", stdin=data, contained=True)).stdout == "yyy"
            assert (await target.run("wc -c", stdin=data, contained=True)).stdout.strip() == "300000"
            # a timeout kills the command's process group; the shell goes on
            with pytest.raises(CommandTimeout):
                await target.run("(sleep 3; touch /srv/app/late) & sleep 30", timeout=1, contained=True)
            await asyncio.sleep(3.5)
            assert (await target.run("test -e /srv/app/late", contained=True)).exit_code == 1
            assert target.shells_opened == 1

    arun(main())
    assert bed.logins() == {host.name: 2}  # the shell's, and the kill's own channel
