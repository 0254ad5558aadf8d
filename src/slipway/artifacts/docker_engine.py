"""The Docker Engine API client: connect, call the SDK in a thread, translate its errors at the seam.

The same code drives Docker Engine and Podman's Docker-compatible service. The SDK is synchronous; every
call runs in a worker thread (:meth:`Engine.call`) and its exceptions become Slipway errors here: nothing
from docker or requests leaks out of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.errors
import requests
from docker.transport.unixconn import UnixHTTPAdapter, UnixHTTPConnection, UnixHTTPConnectionPool

from slipway.errors import (
    ArtifactError,
    ArtifactNotFound,
    CommandTimeout,
    HostUnreachable,
    SlipwayError,
    TargetError,
)

T = TypeVar("T")


@dataclass(frozen=True)
class EngineSpec:
    """Where a Docker Engine API answers and how published ports are reached from here.

    A local engine is a unix socket. A remote engine will be reached through an SSH tunnel that
    forwards a local socket to the remote one: the tunnel only changes ``base_url`` (and forwards
    ``host_ip``'s published ports), nothing else in this module.
    """

    base_url: str
    #: The engine's name in logs and errors (slipway.yml's ``engine:``).
    name: str = "local"
    #: Seconds one API call may take (builds, pushes and pulls included).
    timeout: int = 300
    #: Where ports are published; for a tunnelled engine the tunnel forwards these too.
    host_ip: str = "127.0.0.1"


class Engine:
    """A connected Docker Engine API client whose errors are Slipway errors."""

    def __init__(self, spec: EngineSpec, client: docker.DockerClient) -> None:
        self.spec = spec
        self.client = client

    @classmethod
    async def open(cls, spec: EngineSpec, *, ping_timeout: int = 10) -> Engine:
        """Connect and ping; raises HostUnreachable with what to check when nothing answers."""
        def connect() -> docker.DockerClient:
            _probe_unix_socket(spec.base_url, ping_timeout)
            client = docker.DockerClient(base_url=spec.base_url, timeout=ping_timeout)
            try:
                _use_safe_unix_adapter(client)
                client.ping()
            except BaseException:
                client.close()
                raise
            client.api.timeout = spec.timeout
            return client

        try:
            client = await asyncio.to_thread(connect)
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise HostUnreachable(
                f"container engine at {spec.base_url} does not answer: {_first_line(exc)}",
                host=spec.name, command="ping",
                hint="start the engine (podman system service / dockerd) or fix the engine's address",
            ) from exc
        return cls(spec, client)

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking SDK call in a thread; translate its errors (``what`` names the action)."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except SlipwayError:
            raise
        except Exception as exc:
            raise translate_error(exc, engine=self.spec, what=what) from exc

    async def close(self) -> None:
        """Close the client's connections."""
        await asyncio.to_thread(self.client.close)

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _UnixConnection(UnixHTTPConnection):  # type: ignore[misc]
    def connect(self) -> None:
        # The SDK's connect leaks the socket when connect() fails (a ResourceWarning, an error in
        # our tests, and one file descriptor per failed call in a long-running process).
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_socket)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _UnixConnectionPool(UnixHTTPConnectionPool):  # type: ignore[misc]
    def _new_conn(self) -> _UnixConnection:
        return _UnixConnection(self.base_url, self.socket_path, self.timeout)


class _UnixAdapter(UnixHTTPAdapter):  # type: ignore[misc]
    def get_connection(self, url: str, proxies: object = None) -> _UnixConnectionPool:
        with self.pools.lock:
            pool: _UnixConnectionPool | None = self.pools.get(url)
            if pool is None:
                pool = _UnixConnectionPool(url, self.socket_path, self.timeout, maxsize=self.max_pool_size)
                self.pools[url] = pool
        return pool


def _use_safe_unix_adapter(client: docker.DockerClient) -> None:
    """Swap the SDK's unix-socket adapter for one that closes sockets whose connect failed."""
    api = client.api
    old = getattr(api, "_custom_adapter", None)
    if not isinstance(old, UnixHTTPAdapter):
        return
    adapter = _UnixAdapter(api.base_url, timeout=old.timeout, max_pool_size=old.max_pool_size)
    adapter.socket_path = old.socket_path
    api.mount("http+docker://", adapter)
    api._custom_adapter = adapter
    old.close()


def _probe_unix_socket(base_url: str, timeout: float) -> None:
    """Connect once with our own socket: the SDK's constructor already talks to the engine."""
    if not base_url.startswith("unix://"):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(base_url[len("unix://"):])


def translate_error(exc: BaseException, *, engine: EngineSpec, what: str) -> SlipwayError:
    """The Slipway error for an SDK/HTTP exception raised while doing ``what`` on ``engine``."""
    text = _first_line(exc)
    if isinstance(exc, docker.errors.BuildError):
        return _build_error(exc)
    if isinstance(exc, requests.Timeout):
        return CommandTimeout(f"{what}: the engine did not answer within {engine.timeout}s", host=engine.name,
                              command=what)
    if isinstance(exc, requests.ConnectionError | ConnectionError | FileNotFoundError):
        return HostUnreachable(f"{what}: container engine at {engine.base_url} is unreachable: {text}",
                               host=engine.name, command=what, hint="is the engine running?")
    if isinstance(exc, docker.errors.ImageNotFound):
        return ArtifactNotFound(f"{what}: {text}", hint="build or pull the image first")
    if isinstance(exc, docker.errors.APIError):
        detail = str(exc.explanation or text)
        return TargetError(f"{what} failed: {detail}", host=engine.name, command=what, stderr_tail=detail)
    return TargetError(f"{what} failed: {type(exc).__name__}: {text}", host=engine.name, command=what)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _build_error(exc: docker.errors.BuildError) -> ArtifactError:
    lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
    tail = "\n".join(line for line in lines if line)[-2000:]
    return ArtifactError(f"image build failed: {exc.msg}\n{tail}", hint="fix the Dockerfile or the build context")


async def inspect_image(engine: Engine, reference: str) -> dict[str, Any] | None:
    """The engine's inspect data of an image, or None when it does not know it."""
    try:
        return await engine.call(f"inspect image {reference}", engine.client.api.inspect_image, reference)
    except ArtifactNotFound:
        return None


async def container_logs(engine: Engine, container_id: str, *, lines: int = 20) -> str:
    """The last lines of a container's output ('' when they cannot be read)."""
    try:
        raw = await engine.call("container logs", engine.client.api.logs, container_id, tail=lines)
    except SlipwayError:
        return ""
    return raw.decode(errors="replace").strip() if isinstance(raw, bytes) else str(raw)


async def remove_container(engine: Engine, container_id: str) -> None:
    """Force-remove a container; one that is already gone is fine."""
    with contextlib.suppress(ArtifactNotFound):
        try:
            await engine.call("remove container", engine.client.api.remove_container, container_id, force=True)
        except TargetError as exc:
            if "no such container" not in exc.message.lower():
                raise
