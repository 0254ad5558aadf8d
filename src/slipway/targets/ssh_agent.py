"""A host's resident shell starter: later commands reach the dispatcher without a login shell.

One long-lived shell per host (ssh_shell) makes a deployment pay the login shell once. A rollback, the next
deployment or ``slipway app status`` is a new process with new connections, and pays it again: on a
server whose ``~/.bashrc`` runs pyenv, rbenv, nvm or conda hooks, that login is most of a rollback's
time. So once a host has been logged into, Slipway leaves a small agent there (Python 3, standard library
only) listening on a unix socket under the target's root, ``.slipway/agent/<version>.sock`` (directory
mode 0700). A later connection asks sshd for a channel to that socket (``direct-streamlocal``, which
starts no shell at all) and the agent starts the same dispatcher for it, in the environment of the login
that started the agent. The agent exits after ``idle`` seconds without a connection (default 600), when
its socket is removed or replaced, or with the host; the next command then logs in again.

The dispatcher speaks the protocol of ssh_shell on the socket, with its stdout and stderr in frames
(one byte 1 or 2, four bytes of length, the bytes) because a socket has one stream where a channel has
two. The socket's name carries a hash of the agent and the dispatcher, so that a Slipway of another
version never talks to this one's agent. A host without ``python3``, or whose sshd refuses socket
forwarding, keeps logging in: nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import struct
from collections.abc import Awaitable, Callable
from shlex import quote

import asyncssh

from slipway.targets.ssh_keeper import KeepSpec, hand_over, kept_socket
from slipway.targets.ssh_shell import DISPATCHER, STATUS_LINE, FramedCommand, Shell

#: The agent: argv is SOCKET IDLE_SECONDS DISPATCHER. Python 3.6 and later, standard library only.
AGENT = r"""
import os, select, socket, struct, subprocess, sys, threading, time
path, idle, script = sys.argv[1], float(sys.argv[2]), sys.argv[3]
if os.fork(): sys.exit(0)
os.setsid()
if os.fork(): os._exit(0)
os.umask(0o077)
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2): os.dup2(null, fd)
home = os.path.dirname(path)
os.makedirs(home, mode=0o700, exist_ok=True)
st = os.lstat(home)
if st.st_uid != os.getuid() or st.st_mode & 0o077: os._exit(1)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
spare = "%s.%d" % (path, os.getpid())
server.bind(spare)
server.listen(64)
os.rename(spare, path)
mine = os.stat(path).st_ino
state = {"active": 0, "last": time.monotonic()}
lock = threading.Lock()

def relay(stream, tag, conn, sending):
    while True:
        data = os.read(stream.fileno(), 65536)
        if not data: return
        with sending: conn.sendall(struct.pack(">BI", tag, len(data)) + data)

def serve(conn):
    try:
        nonce = b""
        while not nonce.endswith(b"\n") and len(nonce) < 80:
            byte = conn.recv(1)
            if not byte: return
            nonce += byte
        child = subprocess.Popen(["sh", "-c", script, "slipway-shell", nonce.strip().decode()], stdin=conn.fileno(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        sending = threading.Lock()
        errors = threading.Thread(target=relay, args=(child.stderr, 2, conn, sending))
        errors.start()
        relay(child.stdout, 1, conn, sending)
        errors.join()
        child.wait()
    except OSError:
        pass
    finally:
        conn.close()
        with lock:
            state["active"] -= 1
            state["last"] = time.monotonic()

while True:
    ready, _, _ = select.select([server], [], [], 2.0)
    if ready:
        conn, _ = server.accept()
        with lock: state["active"] += 1
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
        continue
    try:
        if os.stat(path).st_ino != mine: break
    except OSError:
        break
    with lock:
        if state["active"] == 0 and time.monotonic() - state["last"] > idle: break
try:
    if os.stat(path).st_ino == mine: os.unlink(path)
except OSError:
    pass
"""

#: Names the agent and the dispatcher it starts: another version's agent has another socket.
VERSION = hashlib.sha256((AGENT + DISPATCHER).encode()).hexdigest()[:16]

#: Longer socket paths do not fit a sockaddr_un (108 bytes on Linux, 104 elsewhere).
_MAX_PATH = 100

_HEADER = struct.Struct(">BI")


def agent_socket(root: str) -> str | None:
    """Where the agent of the target rooted at ``root`` listens; None where the path would not fit."""
    path = f"{root.rstrip('/')}/.slipway/agent/{VERSION}.sock"
    return path if root.startswith("/") and len(path.encode()) <= _MAX_PATH else None


def start_command(path: str, idle: float) -> str:
    """The command that starts the agent where python3 runs (and says nothing if not), and returns once
    its socket is there (at most 5 s): the next connection, a moment later, finds it."""
    return (
        f"command -v python3 >/dev/null 2>&1 || exit 0; "
        f"python3 -c {quote(AGENT)} {quote(path)} {idle:g} {quote(DISPATCHER)} </dev/null >/dev/null 2>&1; "
        f"i=0; while [ ! -S {quote(path)} ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i + 1)); done"
    )


class _Frames:
    """The agent's frames (tag, length, bytes) back to what a session channel gives ``shell``."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            tag, size = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < _HEADER.size + size:
                return
            payload = self._buffer[_HEADER.size : _HEADER.size + size]
            self._buffer = self._buffer[_HEADER.size + size :]
            self.shell.data_received(payload, asyncssh.EXTENDED_DATA_STDERR if tag == 2 else None)


class AgentChannel(asyncssh.SSHUNIXSession[bytes]):
    """A channel to the agent's socket, carrying one dispatcher: its frames go to ``shell`` as a session
    channel's stdout and stderr would."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self._frames = _Frames(shell)

    def connection_made(self, chan: asyncssh.SSHUNIXChannel[bytes]) -> None:
        self.shell.connection_made(chan)  # type: ignore[arg-type]  # write, write_eof and close are alike
        chan.write(self.shell.nonce + b"\n")

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._frames.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.shell.connection_lost(exc)


class KeptChannel(asyncio.Protocol):
    """The same, through a kept connection's local socket (ssh_keeper): no SSH connection in this process."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self._frames = _Frames(shell)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.shell.connection_made(transport)  # type: ignore[arg-type]  # write, write_eof and close are alike
        transport.write(self.shell.nonce + b"\n")

    def data_received(self, data: bytes) -> None:
        self._frames.feed(data)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.shell.connection_lost(exc)


class AgentClient:
    """SSHTarget's side of the agent (a mixin: the attributes it reads are set by SSHTarget's constructor)."""

    name: str
    connect_timeout: float
    agent_idle: float | None
    agent_path: str | None
    agent_shells_opened: int
    kept_shells_opened: int
    connections_opened: int
    keep_spec: KeepSpec | None
    _logged_in: bool
    _idle: list[Shell]

    async def _connection(self) -> asyncssh.SSHClientConnection:  # SSHTarget's
        raise NotImplementedError

    async def _agent_shell(self) -> Shell | None:
        """A dispatcher started by the host's agent, without a login; None where no agent answers (none
        runs, another version's, sshd refuses socket forwarding): the caller logs in."""
        assert self.agent_path is not None
        conn = await self._connection()
        path = self.agent_path
        shell = await self._dispatcher(lambda shell: conn.create_unix_connection(lambda: AgentChannel(shell), path))
        if shell is not None:
            shell.conn = conn
            self.agent_shells_opened += 1
        return shell

    async def _kept_shell(self) -> Shell | None:
        """A dispatcher through the kept connection's socket (ssh_keeper), when the keeper has one to this host;
        None otherwise (no keeper, the host's agent gone): the caller connects."""
        assert self.keep_spec is not None
        path = kept_socket(self.keep_spec)
        if path is None or not path.exists():
            return None
        loop = asyncio.get_running_loop()
        shell = await self._dispatcher(lambda shell: loop.create_unix_connection(lambda: KeptChannel(shell), str(path)))
        if shell is not None:
            shell.kept = True
            self.kept_shells_opened += 1
        return shell

    async def _dispatcher(self, open_stream: Callable[[Shell], Awaitable[object]]) -> Shell | None:
        """A shell whose stream ``open_stream`` opens to an agent's socket, once its dispatcher is ready."""
        shell = Shell()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await open_stream(shell)
                ready = await shell.started
        except (TimeoutError, asyncssh.Error, OSError):
            ready = False
        if ready:
            return shell
        shell.close()
        return None

    async def _hand_over(self) -> None:
        """After this target connected to the host itself: ask the keeper to keep a connection to it."""
        if self.keep_spec is not None and self.connections_opened and self.agent_idle is not None:
            await hand_over([self.keep_spec])

    async def _leave_agent(self) -> None:
        """Start the host's agent through an idle login shell, if this target logged in (bounded, and
        quiet: a host where it cannot start keeps logging in)."""
        if self.agent_path is None or not self._logged_in or self.agent_idle is None:
            return
        self._logged_in = False
        shells = [s for s in self._idle if s.idle() and s.conn is not None and not s.conn.is_closed()]
        if not shells:
            return
        shell, command = shells[-1], FramedCommand(None)
        with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
            async with asyncio.timeout(self.connect_timeout):
                script = STATUS_LINE + "\n" + start_command(self.agent_path, self.agent_idle)
                # contained: the agent detaches with its streams on /dev/null, so nothing writes later
                go = shell.offer(script, None, command, contained=True)
                await go.wait()
                if not command.exited.is_set():
                    shell.start(None)
                    await command.exited.wait()
