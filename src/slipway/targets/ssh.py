"""The SSH target: one persistent asyncssh connection per host, host keys always checked.

Every command, upload and download reuses the host's connection (opened lazily, opened again after it
closes) and runs as ``sh -c SCRIPT`` through a long-lived shell on the host (:mod:`slipway.targets.ssh_shell`:
the login shell, often the costliest part of a short command on a real server, runs once per channel,
not once per command), or, on a host that cannot run that shell, in a session channel of its own. The
script is built here so that it behaves like :class:`slipway.targets.local.LocalTarget`:

- environment variables become quoted ``export`` assignments (sshd usually refuses ``SetEnv``);
- ``cwd`` becomes a ``cd`` whose failure raises :class:`TargetError`, like a missing directory locally;
- the script first reports its pid on stderr (stripped from the output), so that a timeout can kill the
  command's whole process group (sshd makes every session a process group of its own), not just close
  the channel and leave the command running.

``put`` streams the bytes to ``cat`` into a temp file next to the target and renames it (one round trip,
no SFTP); ``read`` is ``cat``. asyncssh and socket errors are translated here into the
:mod:`slipway.errors` tree and carry the host, the command and the evidence; nothing from asyncssh leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from shlex import quote

import asyncssh

from slipway.errors import (
    CommandResult,
    CommandTimeout,
    HostUnreachable,
    TargetError,
)
from slipway.ports import OutputSink
from slipway.targets.ssh_agent import AgentClient, agent_socket
from slipway.targets.ssh_connect import SSHConnector
from slipway.targets.ssh_keeper import KeepSpec
from slipway.targets.ssh_session import PID_MARK, CommandSession
from slipway.targets.ssh_shell import STATUS_LINE, FramedCommand, Shell

#: After the command exits, how long we keep reading output that a background child may still hold open.
PIPE_GRACE = 1.0
#: sshd's default MaxSessions is 10: stay below it, leaving room for channels that kill timed-out commands.
DEFAULT_MAX_SESSIONS = 8
#: How often a refused session channel is retried (0.02 s, 0.04 s, ... about 2 s in all).
_OPEN_RETRIES = 14
_OPEN_RETRY_DELAY = 0.02
_CWD_MARK = "slipway-ssh: cannot change directory"
_CWD_EXIT = 97
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

@dataclass(frozen=True)
class _Raw:
    """What a session produced, before decoding."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    duration: float


class SocketForward:
    """A local unix socket forwarded to a socket on an SSH host; :meth:`close` stops listening."""

    def __init__(self, listener: asyncssh.SSHListener) -> None:
        self._listener = listener

    async def close(self) -> None:
        """Stop accepting connections on the local socket."""
        self._listener.close()
        await self._listener.wait_closed()


def _script(command: str, env: Mapping[str, str] | None, cwd: str | None) -> str:
    """The POSIX shell script that runs ``command`` with ``env`` in ``cwd``, reporting its pid first."""
    lines = [f"printf '{PID_MARK.decode()}%s\\n' \"$$\" >&2"]
    if env:
        for key in env:
            if not _ENV_NAME.match(key):
                raise ValueError(f"not a valid environment variable name: {key!r}")
        lines.append("export " + " ".join(f"{key}={quote(value)}" for key, value in env.items()))
    if cwd is not None:
        lines.append(f"cd -- {quote(cwd)} || {{ printf '%s\\n' {quote(_CWD_MARK)} >&2; exit {_CWD_EXIT}; }}")
    lines.append(command)
    return "\n".join(lines)


def _decode(data: bytes) -> str:
    """Exactly what the command wrote, as LocalTarget returns it (the Target contract, tests/contract)."""
    return data.decode("utf-8", "replace")


def _tail(data: bytes, lines: int = 10) -> str:
    return "\n".join(data.decode("utf-8", "replace").strip().splitlines()[-lines:])


class SSHTarget(SSHConnector, AgentClient):
    """A host reached over SSH; implements :class:`slipway.ports.Target`."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        root: str = "/srv/app",
        port: int = 22,
        username: str = "root",
        client_keys: Sequence[str | Path] = (),
        known_hosts: str | Path,
        accept_new_host_keys: bool = False,
        connect_timeout: float = 10.0,
        kill_timeout: float = 5.0,
        transfer_timeout: float | None = 600.0,
        keepalive_interval: float = 10.0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        connect_gate: asyncio.Semaphore | None = None,
        persistent_shell: bool = True,
        agent_idle: float | None = None,
        keep: float | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.address = address
        self.port = port
        self.username = username
        self.known_hosts = Path(known_hosts).expanduser()
        self.accept_new_host_keys = accept_new_host_keys
        self.connect_timeout = connect_timeout
        self.kill_timeout = kill_timeout
        self.transfer_timeout = transfer_timeout
        self.keepalive_interval = keepalive_interval
        self.max_sessions = max_sessions
        self.connect_gate = connect_gate
        self._client_key_paths = [str(Path(p).expanduser()) for p in client_keys]
        self._conn: asyncssh.SSHClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connect_lock = asyncio.Lock()
        self._sessions = asyncio.Semaphore(max_sessions)
        self._kill_slots = asyncio.Semaphore(2)
        #: Whether commands go through one long-lived shell per channel (see ssh_shell); turned off for a
        #: host that cannot run it.
        self.persistent_shell = persistent_shell
        self._idle: list[Shell] = []
        #: Where the host's resident agent listens (ssh_agent), and for how long it waits for the next
        #: connection; None: every new connection logs in.
        self.agent_idle = agent_idle
        self.agent_path = agent_socket(root) if agent_idle and persistent_shell else None
        #: The kept connection (ssh_keeper) this target uses and hands over, ``keep`` seconds after its last use.
        self.keep_spec = KeepSpec(
            address, port, username, tuple(self._client_key_paths), str(self.known_hosts), self.agent_path,
            keep, connect_timeout,
        ) if keep and self.agent_path is not None else None
        self.kept_shells_opened = 0
        self._logged_in = False
        self.agent_shells_opened = 0
        #: How many SSH connections, long-lived shells and one-command channels this target has opened.
        self.connections_opened = 0
        self.shells_opened = 0
        self.channels_opened = 0

    def __repr__(self) -> str:
        return f"SSHTarget({self.name!r}, {self.username}@{self.address}:{self.port})"

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
        """Run ``command`` with ``sh -c`` on the host; stream its lines; kill its process group on timeout.

        ``contained``: the command leaves no process behind, so the host's shell lets it write straight
        to the channel (no FIFOs or relays, see :mod:`slipway.targets.ssh_shell`).
        """
        raw = await self._execute(
            command, _script(command, env, cwd), on_output, stdin=stdin, timeout=timeout, contained=contained
        )
        if cwd is not None and raw.exit_code == _CWD_EXIT and _tail(raw.stderr, 1) == _CWD_MARK:
            raise TargetError(f"cannot start command: no directory {cwd}", host=self.name, command=command)
        return CommandResult(
            host=self.name, command=command, exit_code=raw.exit_code, stdout=_decode(raw.stdout),
            stderr=_decode(raw.stderr), duration=raw.duration,
        )

    async def put(self, data: bytes, path: str, *, mode: int = 0o644, timeout: float | None = None) -> None:
        """Write ``data`` to ``path`` atomically: ``cat`` into a temp file beside it, then ``mv``."""
        target = PurePosixPath(path)
        tmp = str(target.parent / f".slipway-put-{secrets.token_hex(8)}")
        script = "\n".join([
            "set -e",
            f"tmp={quote(tmp)}",
            "trap 'rm -f -- \"$tmp\"' EXIT",
            f"mkdir -p -- {quote(str(target.parent))}",
            "umask 077",
            'cat > "$tmp"',
            f'chmod {mode:o} "$tmp"',
            f'mv -f -- "$tmp" {quote(path)}',
        ])
        label = f"put {path}"
        raw = await self._execute(label, _script(script, None, None), None, stdin=data,
                                  timeout=timeout if timeout is not None else self.transfer_timeout)
        if raw.exit_code != 0:
            tail = _tail(raw.stderr)
            raise TargetError(f"cannot write {path}: {tail or f'exit code {raw.exit_code}'}", host=self.name,
                              command=label, exit_code=raw.exit_code, stderr_tail=tail)

    async def read(self, path: str, *, timeout: float | None = None) -> bytes:
        """Read a file from the host with ``cat``; raises TargetError if it cannot."""
        label = f"read {path}"
        script = _script(f"exec cat -- {quote(path)}", None, None)
        raw = await self._execute(label, script, None, stdin=None,
                                  timeout=timeout if timeout is not None else self.transfer_timeout)
        if raw.exit_code != 0:
            tail = _tail(raw.stderr)
            raise TargetError(f"cannot read {path}: {tail or f'exit code {raw.exit_code}'}", host=self.name,
                              command=label, exit_code=raw.exit_code, stderr_tail=tail)
        return raw.stdout

    async def forward_socket(self, local_path: str, remote_path: str) -> SocketForward:
        """Forward the unix socket ``local_path`` (created here) to ``remote_path`` on the host.

        Every connection to the local socket becomes a channel to the remote one over this target's
        connection (host key checked as always). Close the returned forward to remove the socket.
        """
        self._bind_loop()
        conn = await self._connection()
        try:
            listener = await conn.forward_local_path(local_path, remote_path)
        except (asyncssh.Error, OSError) as exc:
            raise TargetError(f"cannot forward {local_path} to {remote_path} on {self.address}: {exc}",
                              host=self.name, command=f"forward {remote_path}") from exc
        return SocketForward(listener)

    async def close(self) -> None:
        """End the idle shells, then close the connection; the next call opens a new one.

        A shell told EOF exits by itself (removing its FIFOs) and sshd reaps it before the connection
        goes: dropped with the connection instead, it would be orphaned on the host.
        """
        try:
            if self._loop is asyncio.get_running_loop():
                await self._leave_agent()
                await self._hand_over()
        finally:
            await self._close_now()

    async def _close_now(self) -> None:
        shells, self._idle = self._idle, []
        conn, self._conn = self._conn, None
        if self._loop is asyncio.get_running_loop():
            # kept connections' shells too: their dispatchers exit, and their sockets close
            ending = [shell.end() for shell in shells if not shell.closed and (conn is not None or shell.kept)]
            if ending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PIPE_GRACE):
                        await asyncio.gather(*ending)
            for shell in shells:
                if shell.kept:
                    shell.close()
        if conn is not None and self._loop is asyncio.get_running_loop():
            conn.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.kill_timeout):
                    await conn.wait_closed()

    async def __aenter__(self) -> SSHTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- commands

    async def _execute(
        self, label: str, script: str, on_output: OutputSink | None, *, stdin: bytes | None, timeout: float | None,
        contained: bool = False,
    ) -> _Raw:
        started = time.monotonic()
        self._bind_loop()
        async with self._sessions:
            session: CommandSession | None = await self._exec_framed(
                label, script, on_output, stdin=stdin, timeout=timeout, contained=contained
            )
            if session is None:
                session = CommandSession(on_output)
                await self._exec_channel(label, script, session, stdin=stdin, timeout=timeout)
        if session.callback_error is not None:
            raise session.callback_error
        assert session.exit_code is not None
        out, err = session.output()
        return _Raw(session.exit_code, out, err, time.monotonic() - started)

    async def _exec_channel(
        self, label: str, script: str, session: CommandSession, *, stdin: bytes | None, timeout: float | None
    ) -> None:
        """One command in a session channel of its own (hosts whose shell cannot run the dispatcher)."""
        # exec: whatever the login shell is (bash execs a lone command, dash forks), sh keeps its pid,
        # which is the process group the timeout kill targets, and its exit status reaches us unchanged.
        conn, chan = await self._open_channel(label, "exec sh -c " + quote(script), session)
        self.channels_opened += 1
        with contextlib.suppress(asyncssh.Error, OSError):  # the exit status or the loss tells the story
            if stdin:
                chan.write(stdin)
            chan.write_eof()
        try:
            async with asyncio.timeout(timeout):
                await session.exited.wait()
        except TimeoutError:
            await self._kill(conn, chan, session)
            raise self._timed_out(label, timeout, session) from None
        except asyncio.CancelledError:
            # A cancelled deployment must not leave its hook running on the host: closing the channel
            # would not stop it (no pty, no SIGHUP). Bounded by kill_timeout, even if cancelled again.
            await asyncio.shield(self._kill(conn, chan, session))
            raise
        if session.exit_code is None:
            raise self._lost(conn, label, session)
        await self._drain(chan, session)

    async def _exec_framed(
        self, label: str, script: str, on_output: OutputSink | None, *, stdin: bytes | None, timeout: float | None,
        contained: bool = False,
    ) -> FramedCommand | None:
        """One command through the host's long-lived shell (None: the host has none, use a channel).

        A shell lost before its "go" ran nothing: it is replaced once, as a closed connection is.
        """
        for attempt in (1, 2):
            found = await self._shell(label)
            if found is None:
                return None
            shell, conn = found, found.conn  # conn None: a kept connection's shell (ssh_keeper)
            session = FramedCommand(on_output)
            with contextlib.suppress(asyncssh.Error, OSError):  # a lost channel shows as a lost frame
                go = shell.offer(STATUS_LINE + "\n" + script, stdin, session, contained=contained)
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        await go.wait()
                except TimeoutError:
                    self._drop_shell(shell)
                    raise HostUnreachable(
                        f"did not answer within {self.connect_timeout:g}s: nothing was run", host=self.name,
                        command=label,
                    ) from None
                except asyncio.CancelledError:
                    shell.close()  # offered, never started: the dispatcher reads EOF instead of "go"
                    raise
                if not session.exited.is_set():
                    shell.start(stdin)
                    break
            self._drop_shell(shell)
            if attempt == 2:
                raise HostUnreachable("lost the connection before the command started: nothing was run",
                                      host=self.name, command=label)
        try:
            async with asyncio.timeout(timeout):
                await session.exited.wait()
        except TimeoutError:
            await self._kill_framed(shell, session)
            raise self._timed_out(label, timeout, session) from None
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_framed(shell, session))
            raise
        if session.exit_code is None:
            raise self._lost(conn, label, session)
        self._idle.append(shell)
        return session

    def _timed_out(self, label: str, timeout: float | None, session: CommandSession) -> CommandTimeout:
        return CommandTimeout(
            f"command timed out after {timeout:g}s and was stopped: {label}", host=self.name,
            command=label, stderr_tail=_tail(session.output()[1]),
        )

    def _lost(self, conn: asyncssh.SSHClientConnection | None, label: str, session: CommandSession) -> TargetError:
        if conn is not None:
            self._drop(conn)
        why = f" ({session.lost})" if session.lost else ""
        return TargetError(
            f"connection lost while running: {label}{why}",
            host=self.name, command=label, stderr_tail=_tail(session.output()[1]),
            hint="the command may or may not have completed on the host",
        )

    async def _shell(self, label: str) -> Shell | None:
        """An idle long-lived shell on the host, started if none is; None where the host has none."""
        if self._idle:
            # A connection the host closed while its shell was idle is noticed on the loop's next turns
            # (its EOF is already queued): let it, so that the command goes to a new connection instead of
            # into a dead one, where it would be reported as lost.
            for _ in range(3):
                await asyncio.sleep(0)
        while self._idle:
            shell = self._idle.pop()
            if shell.idle() and (shell.kept or (shell.conn is not None and not shell.conn.is_closed())):
                return shell
        if not self.persistent_shell:
            return None
        if self.keep_spec is not None:
            kept = await self._kept_shell()
            if kept is not None:
                return kept
        if self.agent_path is not None:
            agent = await self._agent_shell()
            if agent is not None:
                return agent
        shell = Shell()
        conn, _chan = await self._open_channel(label, shell.command_line, shell)
        shell.conn = conn
        try:
            async with asyncio.timeout(self.connect_timeout):
                ready = await shell.started
        except TimeoutError:
            shell.close()
            raise HostUnreachable(f"the shell did not start within {self.connect_timeout:g}s", host=self.name,
                                  command=label) from None
        if ready:
            self.shells_opened += 1
            self._logged_in = True
            return shell
        shell.close()
        if shell.unsupported:  # no setsid, mkfifo or head: one channel per command, as before
            self.persistent_shell = False
            return None
        raise TargetError(
            f"the login shell of {self.username} exited before running anything: {shell.banner_tail()}",
            host=self.name, command=label,
            hint="check the account's login shell and its startup files (~/.bashrc, ~/.profile)",
        )

    async def _open_channel(
        self, label: str, remote: str, session: asyncssh.SSHClientSession[bytes]
    ) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientChannel[bytes]]:
        """Open a session channel; a connection found closed is replaced once (nothing ran yet).

        sshd counts a session until it has fully torn it down, so right after a burst of commands it may
        refuse a new channel ("open failed") although ours are all closed: that is retried, briefly.
        """
        replaced = False
        refusals = 0
        while True:
            conn = await self._connection()
            try:
                async with asyncio.timeout(self.connect_timeout):
                    chan, _ = await conn.create_session(lambda: session, remote, encoding=None)
                return conn, chan
            except TimeoutError:
                self._drop(conn)
                raise HostUnreachable(
                    f"did not open a session within {self.connect_timeout:g}s", host=self.name, command=label
                ) from None
            except asyncssh.ChannelOpenError as exc:
                if not conn.is_closed() and refusals < _OPEN_RETRIES:
                    refusals += 1
                    await asyncio.sleep(_OPEN_RETRY_DELAY * refusals)
                    continue
                if conn.is_closed() and not replaced:
                    replaced = True
                    self._drop(conn)
                    continue
                raise TargetError(f"cannot open a session: {exc}", host=self.name, command=label) from exc
            except (asyncssh.Error, OSError) as exc:
                if conn.is_closed() and not replaced:
                    replaced = True
                    self._drop(conn)
                    continue
                raise TargetError(f"cannot open a session: {exc}", host=self.name, command=label) from exc

    async def _drain(self, chan: asyncssh.SSHClientChannel[bytes], session: CommandSession) -> None:
        """Output may still follow the exit status; a daemon the command started may hold it open."""
        try:
            async with asyncio.timeout(PIPE_GRACE):
                await session.closed.wait()
        except TimeoutError:
            chan.close()

    async def _kill(
        self, conn: asyncssh.SSHClientConnection, chan: asyncssh.SSHClientChannel[bytes], session: CommandSession
    ) -> None:
        """Kill the timed-out command's process group; drop the connection if the host does not answer."""
        try:
            async with asyncio.timeout(self.kill_timeout):
                await self._kill_group(conn, session.pid)
                chan.close()
                await session.closed.wait()
        except (TimeoutError, asyncssh.Error, OSError):
            self._drop(conn)

    async def _kill_framed(self, shell: Shell, session: FramedCommand) -> None:
        """Kill a framed command's process group; its shell ends the frame and is reused. A kept connection's
        shell has no SSH connection here: the kill opens one."""
        try:
            async with asyncio.timeout(self.kill_timeout):
                await self._kill_group(shell.conn or await self._connection(), session.pid)
                await session.exited.wait()
        except (TimeoutError, asyncssh.Error, OSError, TargetError):
            self._drop_shell(shell)
            return
        if session.exit_code is not None:
            self._idle.append(shell)

    async def _kill_group(self, conn: asyncssh.SSHClientConnection, pid: int | None) -> None:
        """SIGKILL a command's process group through a channel of its own (it pays the login shell once)."""
        if pid is None:
            return
        async with self._kill_slots:
            killer, _ = await conn.create_session(
                asyncssh.SSHClientSession,
                # The external kill: the builtin of some shells (dash) cannot signal a process group.
                f"env kill -KILL -- -{pid} 2>/dev/null || kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null; true",
            )
            self.channels_opened += 1
            await killer.wait_closed()

    # ----------------------------------------------------------------- the connection

    def _bind_loop(self) -> None:
        """Connections and locks belong to one event loop: start afresh when used from another."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._conn = None
            self._connect_lock = asyncio.Lock()
            self._sessions = asyncio.Semaphore(self.max_sessions)
            self._kill_slots = asyncio.Semaphore(2)
            self._idle = []

    def _drop_shell(self, shell: Shell) -> None:
        """Give up on a shell: its SSH connection, or (a kept connection's) its socket."""
        if shell.conn is not None:
            self._drop(shell.conn)
        else:
            shell.close()

    def _drop(self, conn: asyncssh.SSHClientConnection) -> None:
        if self._conn is conn:
            self._conn = None
        conn.abort()

    async def _connection(self) -> asyncssh.SSHClientConnection:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        async with self._connect_lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            gate = self.connect_gate if self.connect_gate is not None else contextlib.nullcontext()
            async with gate:
                self._conn = await self._connect()
            self.connections_opened += 1
            return self._conn
