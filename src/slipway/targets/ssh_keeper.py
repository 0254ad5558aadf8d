"""Kept connections: a rollback or ``slipway app status`` right after a deployment opens no SSH connection.

Every Slipway command is a new process, and a new process opens a new SSH connection to every host: key
exchange and authentication cost the host sshd's CPU and the deployer a round trip or two, which is most
of a rollback of 50 hosts once the login shell is gone (ssh_agent). OpenSSH's answer is ControlPersist,
and Ansible turns it on by default; this is Slipway's: with ``keep`` seconds on an ``ssh`` target, the
deployment's end hands each host to a *keeper*, one background process per user on the machine running
Slipway, which opens its own connection to the host (host key checked against the same known_hosts, the
same key) and listens on a unix socket of its own for it, ``<dir>/<hash>.sock``. A later command that
finds that socket connects to it instead of to sshd: the keeper relays the bytes to the host's agent
socket (``direct-streamlocal`` on its connection), which starts a dispatcher as it does for a fresh
connection. No key exchange, no login, no sshd process.

``<dir>`` is ``$XDG_RUNTIME_DIR/slipway-ssh`` or ``~/.cache/slipway/ssh``, mode 0700, checked to belong to
the user: whoever can connect to a socket there runs commands as the deploy user on the host, exactly as
with an OpenSSH control socket. ``<hash>`` names everything that makes the connection (address, port, user,
keys, known_hosts, the agent's socket), so a target with another key never gets this connection. The
keeper forgets a host ``keep`` seconds after its last relayed connection ended, or when the host closes
the connection, and exits when it keeps none; it is started by the first deployment that needs it and
asked over ``<dir>/keeper.sock`` (one JSON line per host).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncssh

from slipway.targets.ssh_connect import ENCRYPTION_ALGS

#: How long a deployment's end waits for the keeper to answer (starting it included).
START_TIMEOUT = 5.0
_CONTROL = "keeper.sock"


@dataclass(frozen=True)
class KeepSpec:
    """One host connection to keep: how to reach it, where its agent listens, for how long to keep it."""

    address: str
    port: int
    username: str
    client_keys: tuple[str, ...]
    known_hosts: str
    remote: str
    keep: float
    connect_timeout: float = 10.0

    @property
    def key(self) -> str:
        """Names the connection: every field but ``keep`` and ``connect_timeout``."""
        ident = [self.address, self.port, self.username, list(self.client_keys), self.known_hosts, self.remote]
        return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


def keeper_dir() -> Path:
    """The directory of the keeper's sockets (not created here)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "slipway-ssh" if runtime else Path.home() / ".cache/slipway/ssh"


def kept_socket(spec: KeepSpec) -> Path | None:
    """The socket a kept connection to ``spec``'s host listens on; None when the directory is not safe."""
    home = keeper_dir()
    path = home / f"{spec.key}.sock"
    return path if _safe(home) and len(str(path).encode()) <= 100 else None


def _safe(home: Path) -> bool:
    """The directory is the user's own, and nobody else's."""
    try:
        st = home.lstat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o077 and home.is_dir() and not home.is_symlink()


# ---------------------------------------------------------------------------------- the deployment's side


async def hand_over(specs: list[KeepSpec]) -> None:
    """Ask the keeper (started if it does not answer) to keep a connection to each host; quiet and bounded:
    a keeper that cannot start only means the next command connects as usual."""
    if not specs:
        return
    with contextlib.suppress(OSError, TimeoutError, ValueError):
        async with asyncio.timeout(START_TIMEOUT):
            reader, writer = await _control()
            try:
                for spec in specs:
                    writer.write(json.dumps(asdict(spec)).encode() + b"\n")
                await writer.drain()
                writer.write_eof()
                await reader.read()  # the keeper has read every line
            finally:
                writer.close()


async def _control() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the keeper's control socket, starting the keeper when none answers."""
    home = keeper_dir()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not _safe(home):
        raise OSError(f"{home} is not the user's own directory with mode 0700")
    path = home / _CONTROL
    with contextlib.suppress(OSError):
        return await asyncio.open_unix_connection(str(path))
    async with _starting():  # the hosts of one deployment end together: one of them starts the keeper
        with contextlib.suppress(OSError):
            return await asyncio.open_unix_connection(str(path))
        await _spawn()
        while True:
            await asyncio.sleep(0.05)
            with contextlib.suppress(OSError):
                return await asyncio.open_unix_connection(str(path))


_locks: dict[int, asyncio.Lock] = {}


def _starting() -> asyncio.Lock:
    """This event loop's lock around starting the keeper."""
    return _locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())


async def _spawn() -> None:
    """Start the keeper, detached: the process started here forks it off and exits, so it outlives this one
    and is nobody's child to wait for."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slipway.targets.ssh_keeper", "--detach", stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    await proc.wait()


# ---------------------------------------------------------------------------------- the keeper


class _Kept:
    """One host's connection and the socket that relays to its agent."""

    def __init__(self, spec: KeepSpec, conn: asyncssh.SSHClientConnection, server: asyncio.Server, path: Path) -> None:
        self.spec, self.conn, self.server, self.path = spec, conn, server, path
        self.inode = path.stat().st_ino
        self.active = 0
        self.last = time.monotonic()

    def expired(self) -> bool:
        return self.conn.is_closed() or (self.active == 0 and time.monotonic() - self.last > self.spec.keep)

    async def close(self) -> None:
        self.server.close()
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self.inode:  # not another keeper's socket by the same name
                self.path.unlink()
        self.conn.close()


class Keeper:
    """The background process: kept connections by key, the control socket, and the idle sweep."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.kept: dict[str, _Kept] = {}
        self.pending: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.done = asyncio.Event()

    async def serve(self) -> None:
        control = self.home / _CONTROL
        spare = self.home / f".{_CONTROL}.{os.getpid()}"
        server = await asyncio.start_unix_server(self._control, path=str(spare))
        os.chmod(spare, 0o600)
        os.replace(spare, control)  # a keeper started at the same moment loses its socket and exits idle
        mine = control.stat().st_ino
        try:
            while not self.done.is_set():
                await asyncio.sleep(1)
                for key, kept in list(self.kept.items()):
                    if kept.expired():
                        del self.kept[key]
                        await kept.close()
                try:
                    replaced = control.stat().st_ino != mine
                except OSError:
                    replaced = True
                if (not self.kept and not self.pending) or replaced:
                    break
        finally:
            server.close()
            with contextlib.suppress(OSError):
                if control.stat().st_ino == mine:
                    control.unlink()
            for kept in self.kept.values():
                await kept.close()

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                data = json.loads(line)
                spec = KeepSpec(**{**data, "client_keys": tuple(data["client_keys"])})
                if spec.key not in self.kept and spec.key not in self.pending:
                    self.pending.add(spec.key)
                    task = asyncio.get_running_loop().create_task(self._keep(spec))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        except (ValueError, TypeError, KeyError, OSError):
            pass
        finally:
            writer.close()

    async def _keep(self, spec: KeepSpec) -> None:
        path = self.home / f"{spec.key}.sock"
        # As SSHConnector connects: the host key only from known_hosts (never "any"), the keys given or
        # else asyncssh's defaults (the SSH agent, ~/.ssh/id_*), no ssh_config.
        credentials: dict[str, Any] = (
            {"client_keys": list(spec.client_keys), "agent_path": None} if spec.client_keys else {}
        )
        try:
            if not Path(spec.known_hosts).is_file():
                raise OSError(f"no known_hosts {spec.known_hosts}")
            conn = await asyncssh.connect(
                spec.address, spec.port, username=spec.username, known_hosts=spec.known_hosts, config=[],
                preferred_auth="publickey", encryption_algs=list(ENCRYPTION_ALGS),
                connect_timeout=spec.connect_timeout, keepalive_interval=10, keepalive_count_max=3, **credentials,
            )
        except (OSError, asyncssh.Error, TimeoutError):
            self.pending.discard(spec.key)
            return
        kept: _Kept | None = None

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert kept is not None
            kept.active += 1
            try:
                remote_reader, remote_writer = await conn.open_unix_connection(spec.remote, encoding=None)
                await asyncio.gather(_pump(reader, remote_writer), _pump(remote_reader, writer))
            except (OSError, asyncssh.Error):
                pass
            finally:
                kept.active -= 1
                kept.last = time.monotonic()
                writer.close()

        spare = self.home / f".{spec.key}.{os.getpid()}"
        server = await asyncio.start_unix_server(relay, path=str(spare))
        os.chmod(spare, 0o600)
        os.replace(spare, path)
        kept = _Kept(spec, conn, server, path)
        self.kept[spec.key] = kept
        self.pending.discard(spec.key)


async def _pump(reader: asyncio.StreamReader | asyncssh.SSHReader[bytes], writer: asyncio.StreamWriter | asyncssh.SSHWriter[bytes]) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError, asyncssh.Error):
        writer.write_eof()


def main() -> None:
    """The keeper process (started by :func:`hand_over` with ``--detach``: it forks and the parent exits)."""
    home = keeper_dir()
    if not _safe(home):
        sys.exit(1)
    if "--detach" in sys.argv[1:]:
        if os.fork():
            os._exit(0)
        os.setsid()
    os.umask(0o077)

    async def run() -> None:
        keeper = Keeper(home)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, keeper.done.set)
        await keeper.serve()

    asyncio.run(run())


if __name__ == "__main__":
    main()
