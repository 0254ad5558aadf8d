"""Container images as artifacts: build once per commit, smoke test, push, pull by digest.

Everything goes through the Docker Engine API with the ``docker`` SDK, so the same code drives Docker
Engine and Podman's Docker-compatible service::

    engine = await Engine.open(EngineSpec("unix:///run/podman/podman.sock"))
    published = await publish_image(
        engine, Path("."), name="shop/web", commit=sha, registry=Registry("registry.example.com"),
        smoke=SmokeTest(checks=parse_checks([{"kind": "http", "url": "http://container:8080/health"}])),
    )
    published.ref.reference          # registry.example.com/shop/web@sha256:...  (what deploys use)

An image is identified by two immutable values: its *image id* (the config digest, known right after
the build, before any registry is involved) and its registry *manifest digest* (known after the push,
and what every pull uses: ``repository@sha256:...``). Tags are only for humans.

Checks of a smoke test (and of readiness, :mod:`slipway.targets.container`) are written against the
container: ``http://container:8080/health`` names the container's port 8080. That port is published
on a free loopback port and the check is pointed there (:func:`retarget_checks`).

The SDK is synchronous; every call runs in a worker thread (:meth:`Engine.call`) and its exceptions
are translated here, at the seam: nothing from docker or requests leaks out of this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import docker
import docker.errors
import requests
from docker.transport.unixconn import UnixHTTPAdapter, UnixHTTPConnection, UnixHTTPConnectionPool

from slipway.checks.runner import CheckResult, failed_required, run_checks
from slipway.clock import SystemClock
from slipway.errors import (
    ArtifactError,
    ArtifactNotFound,
    CheckFailed,
    CommandTimeout,
    ConfigError,
    HostUnreachable,
    SlipwayError,
    TargetError,
)
from slipway.model.checks import CheckSpec, HttpCheck, TcpCheck
from slipway.ports import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")

LABEL = "io.slipway"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_NOT_FOUND = ("manifest unknown", "not found", "no such image", "name unknown")
#: How an engine reports that the registry wants a login or refused the one it was given.
_UNAUTHORIZED = ("unauthorized", "authentication required")
#: The host name checks use for "the container under test"; its port is the container's port.
CONTAINER_HOST = "container"


# -- the engine --------------------------------------------------------------------------------


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


# -- names and references ----------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry login, resolved from secret references at the last moment; never printed."""

    username: str
    password: str = field(repr=False)

    def auth_config(self) -> dict[str, str]:
        """What the SDK sends (base64-encoded) in the ``X-Registry-Auth`` header."""
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True)
class Registry:
    """An OCI registry: ``host[:port]`` and optional credentials."""

    address: str
    credentials: RegistryCredentials | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.address or "/" in self.address or "@" in self.address:
            raise ConfigError(f"registry address {self.address!r} must be host[:port]", key_path="registry.address")

    def repository(self, name: str) -> str:
        """The full repository of image ``name`` in this registry."""
        return f"{self.address}/{name}"


@dataclass(frozen=True)
class ImageRef:
    """An image in a registry pinned by its manifest digest: ``repository@sha256:...``."""

    repository: str
    digest: str

    def __post_init__(self) -> None:
        if not DIGEST_RE.match(self.digest):
            raise ArtifactError(f"{self.digest!r} is not an image digest",
                                hint="image digests look like sha256:<64 hex digits>")
        if not self.repository or "@" in self.repository:
            raise ArtifactError(f"{self.repository!r} is not an image repository")

    @property
    def reference(self) -> str:
        """``repository@digest``: what pulls and containers use."""
        return f"{self.repository}@{self.digest}"

    @property
    def short(self) -> str:
        """The first 12 hex digits of the digest (for names and logs)."""
        return self.digest[len("sha256:"):][:12]

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Read ``repository@sha256:...``; a tag is not accepted (tags move, digests do not)."""
        repository, sep, digest = text.partition("@")
        if not sep:
            raise ArtifactError(f"{text!r} is not pinned by digest", hint="use repository@sha256:<digest>")
        return cls(repository, digest)


@dataclass(frozen=True)
class BuiltImage:
    """An image built for one commit, known by its image id before any push."""

    repository: str
    commit: str
    image_id: str
    #: True when an image for this commit already existed and was not built again.
    reused: bool = False

    @property
    def local_ref(self) -> str:
        """``repository:commit``: the local tag."""
        return f"{self.repository}:{self.commit}"


# -- build -------------------------------------------------------------------------------------


async def build_image(
    engine: Engine,
    context: Path | bytes,
    *,
    repository: str,
    commit: str,
    dockerfile: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Build ``context`` (a directory, or a tar as bytes) once for ``commit``; reuse an earlier build.

    The image is tagged ``repository:commit`` and labelled with the commit, so a second call for
    the same commit returns the existing image (``reused=True``) instead of building a different one.
    """
    if not _TAG_RE.match(commit):
        raise ConfigError(f"commit {commit!r} cannot be an image tag", key_path="artifact.commit")
    tag = f"{repository}:{commit}"
    existing = await _inspect_image(engine, tag)
    if existing is not None and existing.get("Config", {}).get("Labels", {}).get(f"{LABEL}.commit") == commit:
        log.info("image %s already built for commit %s: %s", repository, commit, existing["Id"])
        return BuiltImage(repository, commit, str(existing["Id"]), reused=True)
    options: dict[str, Any] = {
        "tag": tag, "rm": True, "forcerm": True, "dockerfile": dockerfile, "buildargs": dict(build_args or {}),
        "labels": {**(labels or {}), f"{LABEL}.commit": commit}, "timeout": engine.spec.timeout,
    }
    if isinstance(context, bytes):
        options.update(fileobj=io.BytesIO(context), custom_context=True)
    else:
        options.update(path=str(context))
    started = time.monotonic()
    try:
        image, _ = await engine.call(f"build {tag}", engine.client.images.build, **options)
    except TargetError as exc:
        raise ArtifactError(f"building image {tag} failed: {exc.message}", hint="see the build output") from exc
    log.info("built %s in %.1fs: %s", tag, time.monotonic() - started, image.id)
    return BuiltImage(repository, commit, str(image.id))


async def _inspect_image(engine: Engine, reference: str) -> dict[str, Any] | None:
    try:
        return await engine.call(f"inspect image {reference}", engine.client.api.inspect_image, reference)
    except ArtifactNotFound:
        return None


def _build_error(exc: docker.errors.BuildError) -> ArtifactError:
    lines = [str(chunk.get("stream") or chunk.get("error") or "").rstrip() for chunk in exc.build_log]
    tail = "\n".join(line for line in lines if line)[-2000:]
    return ArtifactError(f"image build failed: {exc.msg}\n{tail}", hint="fix the Dockerfile or the build context")


# -- checks against a container ----------------------------------------------------------------


def check_ports(checks: Iterable[CheckSpec]) -> set[int]:
    """The container ports that ``checks`` talk to (http/tcp checks on host ``container``)."""
    ports: set[int] = set()
    for spec in checks:
        if isinstance(spec, HttpCheck):
            parts = urlsplit(spec.url)
            if parts.hostname == CONTAINER_HOST:
                ports.add(parts.port or (443 if parts.scheme == "https" else 80))
        elif isinstance(spec, TcpCheck) and spec.host == CONTAINER_HOST:
            ports.add(spec.port)
    return ports


def retarget_checks(checks: Sequence[CheckSpec], host_ip: str, published: Mapping[int, int]) -> list[CheckSpec]:
    """The checks with host ``container`` and a container port pointed at the published address.

    Names stay as written (``http GET http://container:8080/health``): they describe the container.
    """
    result: list[CheckSpec] = []
    for spec in checks:
        if isinstance(spec, HttpCheck) and urlsplit(spec.url).hostname == CONTAINER_HOST:
            parts = urlsplit(spec.url)
            port = published[parts.port or (443 if parts.scheme == "https" else 80)]
            url = urlunsplit((parts.scheme, f"{host_ip}:{port}", parts.path, parts.query, parts.fragment))
            result.append(spec.model_copy(update={"url": url}))
        elif isinstance(spec, TcpCheck) and spec.host == CONTAINER_HOST:
            result.append(spec.model_copy(update={"host": host_ip, "port": published[spec.port]}))
        elif isinstance(spec, HttpCheck | TcpCheck):
            result.append(spec)
        else:
            raise ConfigError(
                f"check {spec.name!r}: only http and tcp checks can test a container",
                hint="write the check as kind: http or kind: tcp against host 'container'",
            )
    return result


def published_ports(attrs: Mapping[str, Any], ports: Iterable[int]) -> dict[int, int]:
    """Container port -> host port, read from a container's inspect data."""
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    found: dict[int, int] = {}
    for port in ports:
        entries = bindings.get(f"{port}/tcp") or []
        if entries:
            found[port] = int(entries[0]["HostPort"])
    return found


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


# -- smoke test --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmokeTest:
    """How to smoke test an image: its checks, and how to start the container under test."""

    checks: tuple[CheckSpec, ...]
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class SmokeTestResult:
    """What the smoke test of one image saw: recorded whether it passed or not."""

    image_id: str
    ok: bool
    results: tuple[CheckResult, ...]
    logs_tail: str
    duration: float

    def summary(self) -> str:
        """One line per check."""
        return "\n".join(r.summary() for r in self.results)


class SmokeTestFailed(CheckFailed):
    """The image's smoke test failed: the image was not pushed. ``result`` holds the evidence."""

    def __init__(self, message: str, *, result: SmokeTestResult, evidence: str) -> None:
        self.result = result
        super().__init__(message, evidence=evidence,
                         hint="fix the image (see the container output above); it was not pushed")


async def smoke_test(
    engine: Engine, image: BuiltImage, smoke: SmokeTest, *, clock: Clock | None = None
) -> SmokeTestResult:
    """Start a container from ``image``, run the checks against it, remove it; raise if a check fails."""
    clock = clock or SystemClock()
    ports = check_ports(smoke.checks)
    started = clock.monotonic()
    container = await engine.call(
        f"start smoke test container of {image.local_ref}", engine.client.api.create_container,
        image.image_id, command=list(smoke.command) if smoke.command else None, environment=dict(smoke.env),
        ports=sorted(ports), labels={f"{LABEL}.smoke-test": image.commit},
        host_config=engine.client.api.create_host_config(
            port_bindings={port: (engine.spec.host_ip, None) for port in ports}
        ),
    )
    container_id = str(container["Id"])
    try:
        await engine.call("start smoke test container", engine.client.api.start, container_id)
        attrs = await engine.call("inspect smoke test container", engine.client.api.inspect_container, container_id)
        checks = retarget_checks(smoke.checks, engine.spec.host_ip, published_ports(attrs, ports))
        results = tuple(await run_checks(checks, clock=clock))
        logs = await container_logs(engine, container_id)
    finally:
        await remove_container(engine, container_id)
    result = SmokeTestResult(image.image_id, not failed_required(results), results, logs, clock.monotonic() - started)
    log.info("smoke test of %s: %s", image.local_ref, "passed" if result.ok else "FAILED")
    if not result.ok:
        evidence = result.summary() + (f"\n    container output:\n    {logs}" if logs else "")
        raise SmokeTestFailed(f"smoke test of image {image.local_ref} failed", result=result, evidence=evidence)
    return result


# -- push and pull -----------------------------------------------------------------------------


async def push_image(engine: Engine, image: BuiltImage, registry: Registry, *, name: str) -> ImageRef:
    """Tag ``image`` for ``registry``, push it and return it pinned by the registry's manifest digest."""
    repository = registry.repository(name)
    await engine.call(f"tag {image.image_id}", engine.client.api.tag, image.image_id, repository, image.commit)
    auth = registry.credentials.auth_config() if registry.credentials else None
    what = f"push {repository}:{image.commit}"
    lines = await engine.call(what, lambda: _consume(engine.client.api.push(
        repository, image.commit, stream=True, decode=True, auth_config=auth)))
    error = next((str(line["error"]) for line in lines if line.get("error")), None)
    if error is not None:
        raise ArtifactError(
            f"registry {registry.address} refused the push of {repository}:{image.commit}: {error.strip()}",
            hint=_registry_hint(error, registry.credentials,
                                "check that the registry runs, accepts pushes and that the credentials may push"),
        )
    digest = _pushed_digest(lines)
    if digest is None:
        raise ArtifactError(f"{what}: the engine did not report the manifest digest",
                            hint=f"engine output: {lines[-3:]}")
    ref = ImageRef(repository, digest)
    log.info("pushed %s", ref.reference)
    return ref


def _registry_hint(error: str, credentials: RegistryCredentials | None, default: str) -> str:
    """Say whether the registry refused the login we sent or wanted one; ``default`` otherwise.

    Neither the user name (it may be a secret reference too) nor the password is named.
    """
    if not any(marker in error.lower() for marker in _UNAUTHORIZED):
        return default
    if credentials is None:
        return "the registry demands a login: set artifact.registry.username and password"
    return "the registry refused the login: check artifact.registry.username and password"


def _consume(stream: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Read the whole progress stream: it is bounded, and an unread response would keep its socket open.
    return [line for line in stream if isinstance(line, dict)]


def _pushed_digest(lines: Sequence[Mapping[str, Any]]) -> str | None:
    for line in reversed(lines):
        aux = line.get("aux")
        if isinstance(aux, Mapping) and DIGEST_RE.match(str(aux.get("Digest", ""))):
            return str(aux["Digest"])
        match = re.search(r"digest: (sha256:[0-9a-f]{64})", str(line.get("status", "")))
        if match:
            return match.group(1)
    return None


async def pull_image(engine: Engine, ref: ImageRef, *, credentials: RegistryCredentials | None = None) -> str:
    """Pull ``ref`` by its digest and return the local image id; ArtifactNotFound when it is absent."""
    auth = credentials.auth_config() if credentials else None
    lines = await engine.call(f"pull {ref.reference}", lambda: _consume(engine.client.api.pull(
        ref.repository, ref.digest, stream=True, decode=True, auth_config=auth)))
    error = next((str(line["error"]) for line in lines if line.get("error")), None)
    if error is not None:
        if any(marker in error.lower() for marker in _NOT_FOUND):
            raise ArtifactNotFound(f"image {ref.reference} is not in the registry: {error.strip()}",
                                   hint="push the image first, or check the digest against the build's record")
        raise ArtifactError(f"pulling {ref.reference} failed: {error.strip()}",
                            hint=_registry_hint(error, credentials,
                                                "check that the registry runs and the engine may reach it"))
    attrs = await _inspect_image(engine, ref.reference)
    if attrs is None:
        raise ArtifactNotFound(f"the engine pulled {ref.reference} but does not know it by that digest")
    return str(attrs["Id"])


# -- the whole step ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedImage:
    """An image built once, smoke tested and pushed: what the store records for the commit."""

    built: BuiltImage
    smoke: SmokeTestResult
    ref: ImageRef


async def publish_image(
    engine: Engine,
    context: Path | bytes,
    *,
    name: str,
    commit: str,
    registry: Registry,
    smoke: SmokeTest,
    dockerfile: str = "Dockerfile",
    clock: Clock | None = None,
) -> PublishedImage:
    """Build (once per commit), smoke test, then push; a failed smoke test raises and pushes nothing.

    The local tag is ``localhost/slipway/<name>:<commit>``: fully qualified, because Podman's Docker
    API would otherwise read a short name as docker.io's.
    """
    repository = f"localhost/slipway/{name}"
    built = await build_image(engine, context, repository=repository, commit=commit, dockerfile=dockerfile)
    result = await smoke_test(engine, built, smoke, clock=clock)
    ref = await push_image(engine, built, registry, name=name)
    return PublishedImage(built, result, ref)
