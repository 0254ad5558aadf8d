"""The container parts of slipway.yml: the image artifact, the services, and container targets.

docs/containers.md documents each key. Cross-key rules (a target's services exist, a service's secrets
are defined in each environment it runs in, images deploy only to container targets) are checked in
:func:`slipway.config.check_containers`, where the file positions are known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from slipway.errors import ConfigError
from slipway.model.base import NAME_RE, Frozen, SecretRef, env_names
from slipway.model.checks import CheckSpec, HttpCheck, TcpCheck

#: Service, app and environment names as containers carry them (docker names and labels).
CONTAINER_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,40}$"
#: An image repository path: lowercase components separated by '/' (the OCI distribution spec).
_REPOSITORY_RE = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
_REGISTRY_RE = r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$"


class RegistrySpec(Frozen):
    """The OCI registry images are pushed to and pulled from; credentials are secret references."""

    #: ``host[:port]``, no scheme.
    address: str = Field(pattern=_REGISTRY_RE)
    #: The login name: a plain string or a secret reference.
    username: str | SecretRef | None = None
    password: SecretRef | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> RegistrySpec:
        if (self.username is None) != (self.password is None):
            raise ValueError("a registry login needs both username and password (password: {env: VAR})")
        return self


def _container_checks(value: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
    for spec in value:
        if not isinstance(spec, HttpCheck | TcpCheck):
            raise ValueError(f"only http and tcp checks can test a container, not {spec.kind.value!r}")
    return value


class ImageArtifactSpec(Frozen):
    """``artifact: {kind: image}``: a container image built once per commit, smoke tested, pushed."""

    kind: Literal["image"] = "image"
    #: The repository under the registry, e.g. ``shop/web``.
    name: str = Field(pattern=_REPOSITORY_RE)
    #: The build context, a directory relative to the commit's clean export.
    context: str = "."
    #: The Dockerfile, relative to the context.
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = Field(default_factory=dict)
    #: The build engine (``unix:///path``); default: ``DOCKER_HOST``, else ``unix:///var/run/docker.sock``.
    engine: str | None = None
    registry: RegistrySpec
    #: Checks against a container of the new image (host ``container``); nothing is pushed unless they pass.
    smoke: tuple[CheckSpec, ...] = Field(min_length=1)
    #: Seconds one engine call (build, push, pull) may take.
    timeout: int = Field(default=600, ge=1)

    @field_validator("context", "dockerfile")
    @classmethod
    def _inside(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"{value!r} must be a relative path inside the commit")
        return value

    @field_validator("engine")
    @classmethod
    def _local_engine(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("unix:///"):
            raise ValueError("the build engine is a local socket: unix:///path/to/engine.sock")
        return value

    @field_validator("smoke")
    @classmethod
    def _smoke_tests_the_container(cls, value: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
        return _container_checks(value)


class ServiceConfig(Frozen):
    """One service of the app (``services.web``): the image's container with its command and settings."""

    #: The container port the router sends traffic to (and readiness checks may name).
    port: int | None = Field(default=None, ge=1, le=65535)
    #: Replaces the image's command (a worker from the web image: same image, another command).
    command: tuple[str, ...] | None = Field(default=None, min_length=1)
    #: Environment variables, templated with ``vars``, ``environment`` and ``host`` (the target).
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: Names of the environment's ``secrets`` given to the container as variables of the same name.
    secrets: tuple[str, ...] = ()
    #: Checks against host ``container`` a new container passes before it takes traffic.
    readiness: tuple[CheckSpec, ...] = ()
    #: Services started (and switched) before this one.
    depends_on: tuple[str, ...] = ()
    #: The router's upstream group of this service; default: the environment's ``router.group``.
    router_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    #: Seconds between SIGTERM and SIGKILL when an old container stops.
    stop_timeout: int = Field(default=10, ge=0, le=3600)
    #: An init as the container's PID 1 (the engine's: podman's catatonit, Docker's docker-init) that
    #: forwards signals to the app and reaps its children. An app that is PID 1 itself ignores SIGTERM
    #: unless it handles it, so every stop would wait the whole ``stop_timeout``.
    init: bool = True
    #: A service without readiness checks must still be running after this many seconds.
    settle: float = Field(default=1.0, gt=0, le=600)

    @field_validator("readiness")
    @classmethod
    def _readiness_tests_the_container(cls, value: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
        return _container_checks(value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return env_names(value)


@dataclass(frozen=True)
class EngineEndpoint:
    """A parsed ``engine:`` address: a local socket, or a socket on a host reached over SSH."""

    scheme: Literal["unix", "ssh"]
    path: str
    host: str = ""
    port: int = 22
    user: str = "root"


def parse_engine(value: str) -> EngineEndpoint:
    """Read ``unix:///path`` or ``ssh://user@host[:port]/path``; ValueError saying what is allowed."""
    allowed = "write unix:///path/to/engine.sock or ssh://user@host[:port]/path/to/engine.sock"
    parts = urlsplit(value)
    if parts.scheme == "unix" and not parts.netloc and parts.path.startswith("/"):
        return EngineEndpoint("unix", parts.path)
    if parts.scheme == "ssh" and parts.hostname and parts.path.startswith("/") and len(parts.path) > 1:
        try:
            port = parts.port or 22
        except ValueError:
            raise ValueError(f"engine {value!r} has a bad port: {allowed}") from None
        return EngineEndpoint("ssh", parts.path, parts.hostname, port, parts.username or "root")
    raise ValueError(f"engine {value!r} is not a container engine address: {allowed}")


class ContainerTargetSpec(Frozen):
    """``kind: container``: the app's services as containers on one container engine."""

    kind: Literal["container"] = "container"
    #: The target's name (the store's "host"); default ``local`` for a socket, the host for ``ssh://``.
    name: str = Field(pattern=NAME_RE)
    #: ``unix:///path/engine.sock`` or ``ssh://user@host[:port]/path/engine.sock`` (through an SSH tunnel).
    engine: str
    #: The services this target runs (empty: every service).
    services: tuple[str, ...] = ()
    #: Where published ports listen, reached by the router and readiness checks; default 127.0.0.1 for a
    #: local engine, the SSH host for a remote one.
    address: str | None = None
    #: For ``ssh://`` engines, as for SSH targets: private key, known_hosts, first-contact policy.
    key: str | None = None
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    connect_timeout: float = Field(default=10, gt=0)
    roles: tuple[str, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("engine"), str):
            try:
                name = parse_engine(data["engine"]).host or "local"
            except ValueError:
                name = "local"  # the engine's own validator says what is wrong
            return {**data, "name": name}
        return data

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        parse_engine(value)
        return value

    @property
    def endpoint(self) -> EngineEndpoint:
        """The parsed engine address."""
        return parse_engine(self.engine)

    @property
    def publish_address(self) -> str:
        """Where this target's published ports are reached from here."""
        endpoint = self.endpoint
        return self.address or (endpoint.host if endpoint.scheme == "ssh" else "127.0.0.1")


def dependency_order(depends_on: Mapping[str, Sequence[str]]) -> list[str]:
    """Service names in dependency order (each after everything it depends on), stable otherwise.

    ``depends_on`` maps each service to the services it depends on; a cycle or an unknown service is a
    ConfigError naming it.
    """
    ordered: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ConfigError(f"services depend on each other in a cycle: {' -> '.join((*path, name))}",
                              key_path=f"services.{name}.depends_on")
        state[name] = "visiting"
        for dep in depends_on[name]:
            if dep not in depends_on:
                raise ConfigError(f"service {name!r} depends on unknown service {dep!r}",
                                  key_path=f"services.{name}.depends_on",
                                  hint=f"known services: {', '.join(sorted(depends_on))}")
            visit(dep, (*path, name))
        state[name] = "done"
        ordered.append(name)

    for name in depends_on:
        visit(name, ())
    return ordered
