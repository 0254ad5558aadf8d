"""The Target contract: the same behaviours against every implementation (local, fake, SSH).

The spec is :class:`slipway.ports.Target`: run a POSIX shell command and return what it did (a non-zero
exit is a result, not an exception; transport problems are TargetError subclasses), put a file
atomically with a mode, read a file (TargetError when it is missing), close and be usable again. Where
the docstrings leave a detail open, the contract pins what the engine relies on: output is exactly what
the command wrote, ``env`` adds variables literally, a missing ``cwd`` is a TargetError before anything
runs, a timeout stops the command's whole process group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from shlex import quote

import pytest

from slipway.errors import CommandFailed, CommandTimeout, HostUnreachable, TargetError
from slipway.ports import Target
from tests.contract.conftest import Subject

pytestmark = pytest.mark.timeout(120)

#: Environment values a naive implementation would mangle (quotes, expansions, newlines, emptiness).
NASTY_ENV = {
    "QUOTE": "it's \"quoted\"",
    "SPACES": "  two  spaces  ",
    "SUBST": "$(touch pwned) `touch pwned2` ${HOME}",
    "NEWLINES": "line one\nline two\n",
    "EMPTY": "",
    "META": "back\\slash ;|&<>*?~ #no-comment",
}
#: A directory name that breaks every unquoted use: quotes, a space, a dollar, a leading dash, non-ASCII.
AWKWARD = "-it's a \"dir\" $HOME `x` ü"


def exercise(subject: Subject, body: Callable[[Target], Awaitable[None]], *, limit: float = 60) -> None:
    """Run ``body`` against a new target of the subject's kind, its deploy root created, in bounded time."""

    async def main() -> None:
        target = subject.make()
        async with asyncio.timeout(limit):
            try:
                made = await target.run(f"mkdir -p -- {quote(target.root)}")
                assert made.ok, made.stderr
                await body(target)
            finally:
                await target.close()

    asyncio.run(main())


def test_every_kind_is_a_target(subject: Subject) -> None:
    async def body(target: Target) -> None:
        assert isinstance(target, Target)
        assert target.name and target.root.startswith("/")

    exercise(subject, body)


def test_run_returns_exit_code_and_both_outputs(subject: Subject) -> None:
    command = "printf 'out\\n'; printf 'err\\n' >&2; exit 3"

    async def body(target: Target) -> None:
        result = await target.run(command)
        assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert (result.host, result.command, result.ok) == (target.name, command, False)
        assert result.duration >= 0
        ok = await target.run("true")
        assert (ok.exit_code, ok.ok, ok.stdout, ok.stderr) == (0, True, "", "")

    exercise(subject, body)


def test_output_is_exactly_what_the_command_wrote(subject: Subject) -> None:
    async def body(target: Target) -> None:
        assert (await target.run("printf 'a\\n\\nb'")).stdout == "a\n\nb"
        assert (await target.run("printf 'x\\n\\n'")).stdout == "x\n\n"
        assert (await target.run("printf 'h\\303\\251llo \\342\\234\\223\\n'")).stdout == "héllo ✓\n"
        assert (await target.run("printf 'e1\\ne2\\n' >&2")).stderr == "e1\ne2\n"

    exercise(subject, body)


def test_a_missing_command_is_exit_127_not_an_exception(subject: Subject) -> None:
    async def body(target: Target) -> None:
        result = await target.run("no-such-command-anywhere")
        assert result.exit_code == 127 and "not found" in result.stderr

    exercise(subject, body)


def test_stdin_reaches_the_command_and_none_means_eof(subject: Subject) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, every byte value

    async def body(target: Target) -> None:
        assert (await target.run("tr a-z A-Z", stdin=b"hello\nworld\n")).stdout == "HELLO\nWORLD\n"
        assert (await target.run("wc -c", stdin=big)).stdout.strip() == str(len(big))
        assert (await target.run(f"cat > {quote(target.root + '/in.bin')}", stdin=big)).ok
        assert await target.read(target.root + "/in.bin") == big
        no_stdin = await target.run("cat", timeout=20)  # must see end of input at once, not hang
        assert (no_stdin.ok, no_stdin.stdout) == (True, "")

    exercise(subject, body)


def test_env_adds_variables_literally_for_that_command_only(subject: Subject) -> None:
    async def body(target: Target) -> None:
        out = target.root + "/env.out"
        names = " ".join(f'"${name}"' for name in NASTY_ENV)
        result = await target.run(f"cd {quote(target.root)} && printf '%s\\0' {names} > {quote(out)}", env=NASTY_ENV)
        assert result.ok, result.stderr
        assert (await target.read(out)).split(b"\0")[:-1] == [v.encode() for v in NASTY_ENV.values()]
        listing = await target.run(f"ls -A {quote(target.root)}")
        assert "pwned" not in listing.stdout  # nothing in a value was executed
        # The variables are added to the host's environment, not a replacement for it.
        assert (await target.run("command -v sh", env={"X": "1"})).ok
        assert (await target.run("printf %s \"${QUOTE-unset}\"")).stdout == "unset"

    exercise(subject, body)


def test_cwd_is_honoured_and_a_missing_one_fails_before_running(subject: Subject) -> None:
    async def body(target: Target) -> None:
        place = f"{target.root}/work dir"
        assert (await target.run(f"mkdir -p -- {quote(place)}")).ok
        assert (await target.run("pwd", cwd=place)).stdout == place + "\n"
        assert (await target.run("touch here", cwd=place)).ok
        assert await target.read(place + "/here") == b""
        missing = f"{target.root}/missing"
        with pytest.raises(TargetError) as info:
            await target.run(f"touch {quote(target.root + '/ran')}", cwd=missing)
        assert not isinstance(info.value, HostUnreachable | CommandTimeout)
        assert info.value.host == target.name and missing in str(info.value)
        assert not (await target.run(f"test -e {quote(target.root + '/ran')}")).ok  # it never ran

    exercise(subject, body)


def test_timeout_raises_command_timeout_and_stops_the_whole_command(subject: Subject) -> None:
    pid_file = "bg.pid"

    async def body(target: Target) -> None:
        command = f"echo started; echo last-words >&2; sleep 60 & echo $! > {pid_file}; wait"
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as info:
            await target.run(command, cwd=target.root, timeout=1.0)
        assert time.monotonic() - started < 15
        assert info.value.host == target.name and "last-words" in info.value.stderr_tail
        # The background child was in the command's process group: it is gone too (dead or a zombie).
        pid = (await target.read(f"{target.root}/{pid_file}")).decode().strip()
        probe = f"s=$(cut -d' ' -f3 /proc/{pid}/stat 2>/dev/null); [ -z \"$s\" ] || [ \"$s\" = Z ]"
        deadline = time.monotonic() + 10
        while not (await target.run(probe)).ok:
            assert time.monotonic() < deadline, f"the command's child {pid} still runs after the timeout"
            await asyncio.sleep(0.05)
        assert (await target.run("echo usable")).stdout == "usable\n"  # the target survives a timeout

    exercise(subject, body)


def test_output_streams_line_by_line_while_the_command_runs(subject: Subject) -> None:
    """The command waits for a file that the test writes only after seeing its first line."""

    async def body(target: Target) -> None:
        flag = f"{target.root}/go"
        seen: list[tuple[str, str]] = []
        first = asyncio.Event()

        def sink(stream: str, line: str) -> None:
            seen.append((stream, line))
            if line == "first":
                first.set()

        async def release_when_first_line_arrives() -> None:
            await first.wait()
            await target.put(b"", flag)

        command = f"echo first; echo warn >&2; while [ ! -e {quote(flag)} ]; do sleep 0.02; done; echo second"
        releaser = asyncio.create_task(release_when_first_line_arrives())
        result = await target.run(command, timeout=30, on_output=sink)
        await releaser
        assert result.ok and result.stdout == "first\nsecond\n" and result.stderr == "warn\n"
        assert [line for stream, line in seen if stream == "stdout"] == ["first", "second"]
        assert [line for stream, line in seen if stream == "stderr"] == ["warn"]

    exercise(subject, body)


def test_put_writes_atomically_with_its_mode_and_read_returns_the_bytes(subject: Subject) -> None:
    data = bytes(range(256)) * 64

    async def body(target: Target) -> None:
        deep = f"{target.root}/deep/er"
        await target.put(data, f"{deep}/blob.bin", mode=0o640)  # parents are created
        assert await target.read(f"{deep}/blob.bin") == data
        await target.put(b"#!/bin/sh\necho ran\n", f"{deep}/tool", mode=0o755)
        assert (await target.run(quote(f"{deep}/tool"))).stdout == "ran\n"
        await target.put(b"new", f"{deep}/blob.bin")  # replaces, with the default mode
        assert await target.read(f"{deep}/blob.bin") == b"new"
        await target.put(b"", f"{deep}/empty")
        assert await target.read(f"{deep}/empty") == b""
        modes = await target.run("stat -c '%n %a' blob.bin tool empty", cwd=deep)
        assert modes.stdout.splitlines() == ["blob.bin 644", "tool 755", "empty 644"]
        assert (await target.run("ls -A", cwd=deep)).stdout.split() == ["blob.bin", "empty", "tool"]  # no temp files

    exercise(subject, body)


def test_put_that_cannot_write_is_a_target_error(subject: Subject) -> None:
    async def body(target: Target) -> None:
        await target.put(b"a file", f"{target.root}/file")
        with pytest.raises(TargetError) as info:
            await target.put(b"x", f"{target.root}/file/child")  # its parent is a regular file
        assert info.value.host == target.name and f"{target.root}/file/child" in str(info.value)
        assert await target.read(f"{target.root}/file") == b"a file"

    exercise(subject, body)


def test_read_of_a_missing_file_or_a_directory_is_a_target_error(subject: Subject) -> None:
    async def body(target: Target) -> None:
        missing = f"{target.root}/no such file"
        with pytest.raises(TargetError) as info:
            await target.read(missing)
        assert not isinstance(info.value, HostUnreachable | CommandTimeout)
        assert info.value.host == target.name
        assert missing in str(info.value) and "No such file" in str(info.value)
        with pytest.raises(TargetError):
            await target.read(target.root)

    exercise(subject, body)


def test_a_failed_command_becomes_command_failed_with_exit_code_and_stderr_tail(subject: Subject) -> None:
    command = "for i in $(seq 1 15); do echo \"problem $i\" >&2; done; exit 4"

    async def body(target: Target) -> None:
        result = await target.run(command)
        error = CommandFailed.from_result(result, what="hook failed")
        assert (error.host, error.command, error.command_exit_code) == (target.name, command, 4)
        assert error.stderr_tail.splitlines() == [f"problem {i}" for i in range(6, 16)]
        assert "hook failed: exit code 4" in str(error) and "problem 15" in str(error)

    exercise(subject, body)


def test_awkward_paths_work_in_put_read_and_cwd(subject: Subject) -> None:
    async def body(target: Target) -> None:
        place = f"{target.root}/{AWKWARD}"
        path = f"{place}/-n file 'x'.txt"
        await target.put(b"awkward", path, mode=0o600)
        assert await target.read(path) == b"awkward"
        assert (await target.run("pwd", cwd=place)).stdout == place + "\n"
        listing = await target.run(f"ls -A -- {quote(place)}")
        assert listing.stdout == "-n file 'x'.txt\n"
        assert (await target.run(f"stat -c %a -- {quote(path)}")).stdout == "600\n"

    exercise(subject, body)


def test_concurrent_commands_each_get_their_own_result(subject: Subject) -> None:
    async def body(target: Target) -> None:
        results = await asyncio.gather(*(target.run(f"sleep 0.05; printf {i}; exit {i}") for i in range(8)))
        assert [(r.stdout, r.exit_code) for r in results] == [(str(i), i) for i in range(8)]

    exercise(subject, body)


def test_close_leaves_the_target_usable(subject: Subject) -> None:
    async def body(target: Target) -> None:
        assert (await target.run("echo one")).stdout == "one\n"
        await target.close()
        await target.close()
        assert (await target.run("echo two")).stdout == "two\n"
        await target.put(b"after close", f"{target.root}/f")
        assert await target.read(f"{target.root}/f") == b"after close"

    exercise(subject, body)
