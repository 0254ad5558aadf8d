"""The local target: a "host" that is a directory on this machine.

Commands run through ``sh -c`` exactly as they would over SSH, so the release layout code and the hooks
behave the same here and on a fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from asyncio.subprocess import Process
from collections.abc import Mapping
from pathlib import Path

from slipway.errors import CommandResult, CommandTimeout, TargetError
from slipway.ports import OutputSink

#: After the command exits, how long we keep reading output that a background child may still hold open.
PIPE_GRACE = 1.0


class LocalTarget:
    """Deploys into ``root`` on this machine."""

    def __init__(self, name: str, root: str | Path, *, base_env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.root = str(Path(root).absolute())
        self._base_env = dict(os.environ if base_env is None else base_env)

    async def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        on_output: OutputSink | None = None,
        contained: bool = False,
    ) -> CommandResult:
        """Run ``command`` with ``sh -c``; stream its lines; stop its whole process group on timeout.

        ``contained`` changes nothing here: a local command costs no login shell or relay.
        """
        started = time.monotonic()
        try:
            proc = await _start(command, cwd=cwd, env={**self._base_env, **(env or {})}, piped_stdin=stdin is not None)
        except OSError as exc:
            raise TargetError(f"cannot start command: {exc}", host=self.name, command=command) from exc
        out: list[str] = []
        err: list[str] = []
        readers = [
            asyncio.create_task(_pump(proc.stdout, "stdout", out, on_output)),
            asyncio.create_task(_pump(proc.stderr, "stderr", err, on_output)),
        ]
        if stdin is not None:
            readers.append(asyncio.create_task(_feed(proc, stdin)))
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            await _finish(readers)
            raise CommandTimeout(
                f"command timed out after {timeout:g}s and was stopped: {command}",
                host=self.name,
                command=command,
                stderr_tail="".join(err[-10:]).rstrip("\n"),
            ) from None
        except asyncio.CancelledError:
            # Stop the group and wait for it (bounded, even if cancelled again): a caller that closes its
            # loop right after the cancellation must not leave the process's transports behind.
            _kill_group(proc.pid)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.shield(_reap(proc, readers))
            raise
        await _finish(readers)
        return CommandResult(
            host=self.name,
            command=command,
            exit_code=proc.returncode or 0,
            stdout="".join(out),
            stderr="".join(err),
            duration=time.monotonic() - started,
        )

    async def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        """Write a file atomically."""
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".slipway-put-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as exc:
            raise TargetError(f"cannot write {path}: {exc.strerror}", host=self.name) from exc

    async def read(self, path: str) -> bytes:
        """Read a file."""
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise TargetError(f"cannot read {path}: {exc.strerror}", host=self.name) from exc

    async def close(self) -> None:
        """Nothing to release."""


async def _start(command: str, *, cwd: str | None, env: dict[str, str], piped_stdin: bool) -> Process:
    """Start ``sh -c command`` in its own process group. A cancellation (Ctrl-C, SIGTERM) that lands while
    it starts waits for the start to finish, stops the whole group and goes on: CPython 3.11 would kill
    ``sh`` alone and then wait for the pipes its children still hold, until the command ended."""
    spawning = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            "sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE if piped_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    )
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        with contextlib.suppress(OSError):
            proc = await spawning
            _kill_group(proc.pid)
            await proc.wait()
        raise


async def _pump(stream: asyncio.StreamReader | None, name: str, sink: list[str], on_output: OutputSink | None) -> None:
    if stream is None:
        return
    while True:
        raw = await stream.readline()
        if not raw:
            return
        text = raw.decode("utf-8", "replace")
        sink.append(text)  # exactly what the command printed, newlines included
        if on_output is not None:
            on_output(name, text.rstrip("\n"))


async def _feed(proc: asyncio.subprocess.Process, data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command stopped reading; its exit code tells the story
    finally:
        proc.stdin.close()


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for the output readers; a daemon the command started may hold the pipes, so not forever."""
    _done, pending = await asyncio.wait(tasks, timeout=PIPE_GRACE)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def _reap(proc: Process, readers: list[asyncio.Task[None]]) -> None:
    """Wait for a killed command and its output readers, at most a few seconds."""
    async with asyncio.timeout(5):
        await proc.wait()
        await _finish(readers)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
