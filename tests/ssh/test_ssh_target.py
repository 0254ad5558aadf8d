"""SSHTarget against real OpenSSH servers: commands, output, env, cwd, transfers, timeouts, reuse."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from ssh_support import arun, host_commands
from tests.support.pytest_ssh import target_for
from tests.support.sshbed import SSHTestBed

from slipway.errors import CommandTimeout, TargetError
from slipway.ports import Target
from slipway.targets.ssh import SSHTarget

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(60)]

NASTY = {
    "QUOTE": "it's \"quoted\"",
    "SPACES": "  two  spaces  ",
    "SUBST": "$(touch /srv/pwned) `touch /srv/pwned2` ${HOME}",
    "NEWLINES": "line one\nline two\n",
    "EMPTY": "",
    "META": "back\\slash ;|&<>*?~ #no-comment",
}


def test_implements_the_target_protocol(shared_bed: SSHTestBed) -> None:
    target = target_for(shared_bed.hosts[0])
    assert isinstance(target, Target)
    assert target.name == "host1"
    assert target.root == "/srv/app"


def test_run_returns_stdout_stderr_and_exit_code(shared_bed: SSHTestBed) -> None:
    async def main() -> None:
        async with target_for(shared_bed.hosts[0]) as target:
            result = await target.run("echo out; echo err >&2; exit 3")
            assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
            assert result.host == "host1" and result.command == "echo out; echo err >&2; exit 3"
            assert not result.ok and result.duration > 0
            missing = await target.run("no-such-command-here")
            assert missing.exit_code == 127 and "not found" in missing.stderr
            killed = await target.run("kill -TERM $$")
            assert killed.exit_code == -15

    arun(main())


def test_stdin_reaches_the_command(shared_bed: SSHTestBed) -> None:
    async def main() -> None:
        async with target_for(shared_bed.hosts[0]) as target:
            result = await target.run("tr a-z A-Z; echo; wc -c < /dev/null", stdin=b"hello\n")
            assert result.stdout.splitlines()[0] == "HELLO"
            no_stdin = await target.run("cat")  # must see EOF, not hang
            assert no_stdin.stdout == "" and no_stdin.ok

    arun(main())


def test_output_streams_line_by_line_while_the_command_runs(shared_bed: SSHTestBed) -> None:
    seen: list[tuple[str, str, float]] = []

    async def main() -> float:
        async with target_for(shared_bed.hosts[0]) as target:
            await target.run(
                "echo one; sleep 1; echo two >&2; printf 'three'",
                on_output=lambda stream, line: seen.append((stream, line, time.monotonic())),
            )
            return time.monotonic()

    finished = arun(main())
    # stdout and stderr are two pipes on the host: lines written in the same instant to both may arrive in
    # either order (as from two pipes read by sshd), so the order is checked per stream and across the sleep
    lines = [(s, line) for s, line, _ in seen]
    assert [line for s, line in lines if s == "stdout"] == ["one", "three"]
    assert [line for s, line in lines if s == "stderr"] == ["two"]
    assert lines[0] == ("stdout", "one")
    assert finished - seen[0][2] > 0.8, "the first line must arrive before the command ends"


def test_an_exception_in_on_output_reaches_the_caller(shared_bed: SSHTestBed) -> None:
    def explode(stream: str, line: str) -> None:
        raise RuntimeError(f"sink broke on {line}")

    async def main() -> None:
        async with target_for(shared_bed.hosts[0]) as target:
            with pytest.raises(RuntimeError, match="sink broke on x"):
                await target.run("echo x", on_output=explode)
            assert (await target.run("echo still-usable")).stdout == "still-usable\n"

    arun(main())


def test_env_values_arrive_byte_for_byte_and_are_never_evaluated(shared_bed: SSHTestBed) -> None:
    host = shared_bed.hosts[0]

    async def main() -> bytes:
        async with target_for(host) as target:
            result = await target.run(
                'for v in "$QUOTE" "$SPACES" "$SUBST" "$NEWLINES" "$EMPTY" "$META"; do'
                ' printf "%s\\0" "$v"; done > /srv/env.out',
                env=NASTY,
            )
            assert result.ok, result.stderr
            with pytest.raises(ValueError, match="not a valid environment variable name"):
                await target.run("true", env={"BAD NAME": "x"})
            return await target.read("/srv/env.out")

    values = arun(main()).split(b"\0")[:-1]
    assert [v.decode() for v in values] == list(NASTY.values())
    assert not (host.host_dir / "pwned").exists() and not (host.host_dir / "pwned2").exists()


def test_cwd_is_honoured_and_a_missing_one_is_a_target_error(shared_bed: SSHTestBed) -> None:
    async def main() -> None:
        async with target_for(shared_bed.hosts[0]) as target:
            await target.run("mkdir -p '/srv/a dir'")
            assert (await target.run("pwd", cwd="/srv/a dir")).stdout == "/srv/a dir\n"
            with pytest.raises(TargetError, match="no directory /srv/missing") as info:
                await target.run("pwd", cwd="/srv/missing")
            assert info.value.host == "host1"

    arun(main())


def test_put_and_read_round_trip_5_mb_of_binary_data(shared_bed: SSHTestBed) -> None:
    host = shared_bed.hosts[1]
    data = os.urandom(5 * 1024 * 1024)

    async def main() -> None:
        async with target_for(host) as target:
            await target.put(data, "/srv/app/deep/er/blob.bin", mode=0o640)
            assert await target.read("/srv/app/deep/er/blob.bin") == data
            listing = await target.run("ls -a /srv/app/deep/er; stat -c %a /srv/app/deep/er/blob.bin")
            assert listing.stdout.split() == [".", "..", "blob.bin", "640"]  # no temp file left behind
            await target.put(b"", "/srv/app/empty")
            assert await target.read("/srv/app/empty") == b""

    arun(main())
    assert (host.host_dir / "app/deep/er/blob.bin").read_bytes() == data  # really on that host's /srv


def test_read_of_a_missing_file_says_why(shared_bed: SSHTestBed) -> None:
    async def main() -> None:
        async with target_for(shared_bed.hosts[0]) as target:
            with pytest.raises(TargetError, match=r"cannot read /srv/nope: .*No such file") as info:
                await target.read("/srv/nope")
            assert info.value.host == "host1" and info.value.command_exit_code == 1

    arun(main())


def test_timeout_kills_the_whole_remote_command(shared_bed: SSHTestBed) -> None:
    host = shared_bed.hosts[2]

    async def main() -> None:
        async with target_for(host) as target:
            started = time.monotonic()
            with pytest.raises(CommandTimeout, match="timed out after 1s") as info:
                await target.run("sleep 123 & sleep 124; echo never", timeout=1)
            assert time.monotonic() - started < 4
            assert info.value.host == host.name
            assert (await target.run("echo alive")).stdout == "alive\n"  # the connection survived
            assert target.connections_opened == 1

    arun(main())
    leftovers = [c for c in host_commands(shared_bed, host.name) if c.startswith(("sleep 123", "sleep 124"))]
    assert leftovers == []


def test_a_background_child_holding_the_output_does_not_hang_the_command(shared_bed: SSHTestBed) -> None:
    async def main() -> float:
        async with target_for(shared_bed.hosts[0]) as target:
            started = time.monotonic()
            result = await target.run("sleep 5 & echo started")
            assert result.stdout == "started\n" and result.ok
            return time.monotonic() - started

    assert arun(main()) < 3


def test_one_connection_is_reused_for_every_command_and_transfer(shared_bed: SSHTestBed) -> None:
    host = shared_bed.hosts[1]
    logins_before = shared_bed.accepted_logins(host)

    async def main() -> None:
        async with target_for(host) as target:
            for i in range(20):
                assert (await target.run(f"echo {i}")).stdout == f"{i}\n"
            await target.put(b"x", "/srv/reuse")
            assert await target.read("/srv/reuse") == b"x"
            results = await asyncio.gather(*(target.run("sleep 0.2; echo ok") for _ in range(20)))
            assert all(r.stdout == "ok\n" for r in results)
            assert shared_bed.established_connections(host) == 1
            assert target.connections_opened == 1

    arun(main())
    assert shared_bed.accepted_logins(host) - logins_before == 1


def test_close_then_use_again_reconnects(shared_bed: SSHTestBed) -> None:
    async def main() -> None:
        target = target_for(shared_bed.hosts[0])
        assert (await target.run("echo a")).stdout == "a\n"
        await target.close()
        assert (await target.run("echo b")).stdout == "b\n"
        assert target.connections_opened == 2
        await target.close()

    arun(main())


def test_a_target_survives_being_used_from_a_new_event_loop(shared_bed: SSHTestBed) -> None:
    target: SSHTarget = target_for(shared_bed.hosts[0])

    async def once() -> str:
        try:
            return (await target.run("echo hop")).stdout
        finally:
            await target.close()

    assert arun(once()) == "hop\n"
    assert arun(once()) == "hop\n"


def test_cancelling_a_run_kills_the_remote_command(shared_bed: SSHTestBed) -> None:
    host = shared_bed.hosts[2]

    async def main() -> None:
        async with target_for(host) as target:
            began = asyncio.Event()
            running = asyncio.create_task(
                target.run("echo go; sleep 125", on_output=lambda _s, _l: began.set())
            )
            async with asyncio.timeout(10):
                await began.wait()
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            assert (await target.run("echo next")).stdout == "next\n"

    arun(main())
    assert not [c for c in host_commands(shared_bed, host.name) if c.startswith("sleep 125")]
