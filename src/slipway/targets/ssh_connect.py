"""Opening an SSH connection: host keys checked (and recorded only when asked), client keys, errors.

A mixin of :class:`slipway.targets.ssh.SSHTarget`, kept apart from running commands. asyncssh errors are
translated here into the :mod:`slipway.errors` tree, with the host's evidence and what to do.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncssh

from slipway.errors import AuthenticationFailed, HostKeyError, HostUnreachable, TargetError

#: AES-GCM first: with the CPU's AES instructions it costs a fraction of chacha20-poly1305, which asyncssh
#: computes in two library calls per packet, and bulk uploads are encrypted in Slipway's one event-loop
#: thread. OpenSSH orders chacha20 first for CPUs without AES instructions; both are modern AEAD ciphers.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)

T = TypeVar("T")


class _Client(asyncssh.SSHClient):
    """Sees the host key asyncssh could not match, and accepts it only for an unknown host when asked."""

    def __init__(self, *, accept_unknown: bool) -> None:
        self._accept_unknown = accept_unknown
        self.presented_key: asyncssh.SSHKey | None = None
        self.accepted_key: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented_key = key
        if self._accept_unknown:
            # asyncssh still checks that the server holds the private key; we record it after login.
            self.accepted_key = key
            return True
        return False

class SSHConnector:
    """How a target reaches its host: the attributes it reads are set by SSHTarget's constructor."""

    name: str
    address: str
    port: int
    username: str
    known_hosts: Path
    accept_new_host_keys: bool
    connect_timeout: float
    keepalive_interval: float
    _client_key_paths: list[str]

    async def _connect(self) -> asyncssh.SSHClientConnection:
        host_known = self._host_known()
        client = _Client(accept_unknown=self.accept_new_host_keys and not host_known)
        try:
            async with asyncio.timeout(self.connect_timeout + 1):
                conn = await asyncssh.connect(
                    self.address, self.port, username=self.username, known_hosts=self._known_hosts(),
                    client_factory=lambda: client, config=[], preferred_auth="publickey",
                    encryption_algs=list(ENCRYPTION_ALGS),
                    connect_timeout=self.connect_timeout, keepalive_interval=self.keepalive_interval,
                    keepalive_count_max=3, **self._credentials(),
                )
        except Exception as exc:
            raise self._connect_error(exc, client, host_known) from exc
        if client.accepted_key is not None:
            self._record_host_key(client.accepted_key)
        return conn

    def _credentials(self) -> dict[str, Any]:
        """Explicit keys only; without any, asyncssh's defaults: the SSH agent and ~/.ssh/id_* keys."""
        if not self._client_key_paths:
            return {}
        return {"client_keys": self._client_keys(), "agent_path": None}

    def _client_keys(self) -> list[asyncssh.SSHKey]:
        keys = []
        for path in self._client_key_paths:
            try:
                keys.append(_read_cached(path, asyncssh.read_private_key))
            except (OSError, asyncssh.KeyImportError) as exc:
                raise AuthenticationFailed(f"cannot load client key {path}: {exc}", host=self.name) from exc
        return keys

    def _known_hosts(self) -> asyncssh.SSHKnownHosts:
        """The parsed known_hosts file; none trusted while it does not exist (only with accept_new_host_keys).

        Never None: asyncssh reads ``known_hosts=None`` as "trust any host key".
        """
        if not self.known_hosts.exists():
            return asyncssh.import_known_hosts("")
        try:
            return _read_cached(str(self.known_hosts), asyncssh.read_known_hosts)
        except (OSError, ValueError) as exc:
            raise HostKeyError(f"cannot read known_hosts {self.known_hosts}: {exc}", host=self.name) from exc

    def _host_known(self) -> bool:
        """Whether known_hosts names this host at all (so a mismatch means the key changed)."""
        if not self.known_hosts.exists():
            if not self.accept_new_host_keys:
                raise HostKeyError(
                    f"known_hosts file {self.known_hosts} does not exist", host=self.name,
                    hint="create it with the host's key (ssh-keyscan, then verify), or allow "
                    "accept_new_host_keys to record keys on first contact",
                )
            return False
        keys, ca_keys, revoked, *_ = asyncssh.match_known_hosts(
            self._known_hosts(), self.address, self.address, self.port if self.port != 22 else None
        )
        return bool(keys or ca_keys or revoked)

    def _record_host_key(self, key: asyncssh.SSHKey) -> None:
        pattern = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(f"{pattern} {algorithm} {blob}\n")

    def _connect_error(self, exc: Exception, client: _Client, host_known: bool) -> TargetError:
        where = f"{self.address}:{self.port}"
        if isinstance(exc, asyncssh.HostKeyNotVerifiable | asyncssh.KeyExchangeFailed):
            seen = f" (it presented {client.presented_key.get_fingerprint()})" if client.presented_key else ""
            if host_known:
                return HostKeyError(
                    f"host key for {where} does not match {self.known_hosts}{seen}: refused",
                    host=self.name, hint="if the host was reinstalled, verify its new key and replace the "
                    "entry in known_hosts; otherwise someone may be intercepting the connection",
                )
            return HostKeyError(
                f"host key for {where} is unknown: not in {self.known_hosts}{seen}", host=self.name,
                hint="verify the fingerprint and add it to known_hosts, or set accept_new_host_keys",
            )
        if isinstance(exc, asyncssh.PermissionDenied):
            return AuthenticationFailed(
                f"{self.username}@{where} refused our key(s) ({exc.reason})", host=self.name,
                hint="check that the client key's public half is in the host's authorized_keys",
            )
        if isinstance(exc, TimeoutError):
            return HostUnreachable(f"{where} did not answer within {self.connect_timeout:g}s", host=self.name)
        if isinstance(exc, ConnectionRefusedError):
            return HostUnreachable(f"{where} refused the connection (is sshd running?)", host=self.name)
        if isinstance(exc, OSError | asyncssh.ConnectionLost):
            return HostUnreachable(f"cannot connect to {where}: {exc}", host=self.name)
        if isinstance(exc, TargetError):
            return exc
        if isinstance(exc, asyncssh.Error):
            return TargetError(f"SSH connection to {where} failed: {exc.reason}", host=self.name)
        return TargetError(f"SSH connection to {where} failed: {exc!r}", host=self.name)

_FILE_CACHE: dict[tuple[str, Any], tuple[tuple[int, int, int], Any]] = {}


def _read_cached(path: str, parse: Callable[[str], T]) -> T:
    """Parse a key or known_hosts file once while it is unchanged: a fleet shares one file for every host.

    Parsing a known_hosts file that lists every host of a fleet once per connection was a tenth of the
    CPU of opening 50 connections. The file's identity, size and mtime key the cache, so an edit (or a key
    recorded by ``accept_new_host_keys``) is read again.
    """
    st = os.stat(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _FILE_CACHE.get((path, parse))
    if cached is not None and cached[0] == stamp:
        return cast(T, cached[1])
    value = parse(path)
    _FILE_CACHE[(path, parse)] = (stamp, value)
    return value
