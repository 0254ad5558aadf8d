"""A :class:`~slipway.ports.Target` for unit tests: real commands in a private directory, every call recorded.

A fake that interprets commands would have to understand the shell, tar, find and ln that the release
layout speaks; one that runs them for real, in a temporary deploy root with a small private environment,
behaves exactly like a host and passes the same contract suite as the local and SSH targets. What makes
it a fake is what a test can do with it without patching anything:

* read back every call (``calls``, ``commands``), with its stdin, environment, directory and timeout;
* make chosen commands answer with an exit code and output, or raise a :class:`TargetError`, instead of
  running (:meth:`FakeTarget.respond`);
* make the whole host unreachable (``unreachable = True``): every call raises
  :class:`~slipway.errors.HostUnreachable`, as an SSH host that went away does.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from slipway.errors import CommandResult, HostUnreachable, TargetError
from slipway.ports import OutputSink
from slipway.targets.local import LocalTarget

CallKind = Literal["run", "put", "read", "close"]


@dataclass(frozen=True)
class Call:
    """One call a FakeTarget received: a command it ran (or answered), a file written or read, a close."""

    kind: CallKind
    #: The command for ``run``, the path for ``put`` and ``read``, "" for ``close``.
    subject: str
    stdin: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: float | None = None
    #: What ``put`` wrote, and with which mode.
    data: bytes | None = None
    mode: int | None = None
    #: Whether ``run`` was told the command leaves no process behind (:meth:`slipway.ports.Target.run`).
    contained: bool = False


@dataclass
class Response:
    """A scripted answer to the commands that match: a result, or an error raised instead of running."""

    pattern: str | re.Pattern[str]
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    error: TargetError | None = None
    #: How many more commands it answers (None: every one).
    times: int | None = 1
    #: The commands it answered.
    hits: list[str] = field(default_factory=list)

    def matches(self, command: str) -> bool:
        """Whether this response answers ``command`` (a substring, or a regular expression searched)."""
        if self.times is not None and self.times <= 0:
            return False
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.search(command) is not None
        return self.pattern in command


class FakeTarget:
    """A host in a private temporary directory: runs commands with ``sh -c`` and records every call.

    ``root`` is the deploy root; without one, a fresh temporary directory that :meth:`remove` (or leaving
    a ``with`` block) deletes. Commands see only ``PATH``, ``HOME`` (the root), ``LANG`` and ``env``,
    never the test process's environment, so hooks behave the same on every machine. Paths are real
    paths of this machine: keep to the root.
    """

    def __init__(self, name: str = "fake", root: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self._owned = root is None
        path = Path(tempfile.mkdtemp(prefix="slipway-fake-")) if root is None else Path(root).absolute()
        path.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.root = str(path)
        base = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": self.root, "LANG": "C.UTF-8"}
        self._local = LocalTarget(name, path, base_env={**base, **(env or {})})
        #: Every call, in order.
        self.calls: list[Call] = []
        #: Set to make every call raise HostUnreachable (the host went away); clear it to bring it back.
        self.unreachable = False
        self._responses: list[Response] = []

    # ----------------------------------------------------------------- what a test reads back

    @property
    def commands(self) -> list[str]:
        """The commands run (or answered by a response), in order."""
        return [call.subject for call in self.calls if call.kind == "run"]

    def calls_of(self, kind: CallKind) -> list[Call]:
        """The calls of one kind, in order."""
        return [call for call in self.calls if call.kind == kind]

    # ----------------------------------------------------------------- what a test scripts

    def respond(
        self,
        pattern: str | re.Pattern[str],
        *,
        exit_code: int = 0,
        stdout: str = "",
        stderr: str = "",
        error: TargetError | None = None,
        times: int | None = 1,
    ) -> Response:
        """Answer the next ``times`` commands containing ``pattern`` (or matching it) without running them.

        The answer is a result with ``exit_code`` and the output (streamed to ``on_output`` as a real
        command's would be), or ``error`` raised. Responses are tried in the order they were added.
        """
        response = Response(pattern, exit_code, stdout, stderr, error, times)
        self._responses.append(response)
        return response

    # ----------------------------------------------------------------- the Target protocol

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
        """Record the call; answer it from a matching response, or run it with ``sh -c`` in the fake host."""
        self.calls.append(
            Call("run", command, stdin=stdin, env=dict(env or {}), cwd=cwd, timeout=timeout, contained=contained)
        )
        self._check_reachable(command)
        response = next((r for r in self._responses if r.matches(command)), None)
        if response is None:
            return await self._local.run(command, stdin=stdin, env=env, cwd=cwd, timeout=timeout, on_output=on_output)
        return _answer(response, self.name, command, on_output)

    async def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        """Record the call and write the file atomically."""
        self.calls.append(Call("put", path, data=data, mode=mode))
        self._check_reachable(f"put {path}")
        await self._local.put(data, path, mode=mode)

    async def read(self, path: str) -> bytes:
        """Record the call and read the file; TargetError if it does not exist."""
        self.calls.append(Call("read", path))
        self._check_reachable(f"read {path}")
        return await self._local.read(path)

    async def close(self) -> None:
        """Record the call; the target stays usable."""
        self.calls.append(Call("close", ""))

    # ----------------------------------------------------------------- the temporary root

    def remove(self) -> None:
        """Delete the temporary root this target created (a root given to it is left alone)."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> FakeTarget:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"FakeTarget({self.name!r}, root={self.root!r}, calls={len(self.calls)})"

    def _check_reachable(self, command: str) -> None:
        if self.unreachable:
            raise HostUnreachable(f"{self.name} does not answer (FakeTarget.unreachable)", host=self.name,
                                  command=command)


def _answer(response: Response, host: str, command: str, on_output: OutputSink | None) -> CommandResult:
    """Use up one answer of ``response`` for ``command``: stream its output, then return or raise it."""
    response.hits.append(command)
    if response.times is not None:
        response.times -= 1
    if on_output is not None:
        for stream, text in (("stdout", response.stdout), ("stderr", response.stderr)):
            for line in text.splitlines():
                on_output(stream, line)
    if response.error is not None:
        raise response.error
    return CommandResult(host=host, command=command, exit_code=response.exit_code, stdout=response.stdout,
                         stderr=response.stderr)
