"""Services on hosts (``deploy.services``): the app's long-running processes on local and SSH targets.

Each service is a command run from ``<root>/current`` under a process manager Slipway owns on the host
(docs/services-on-hosts.md): restarted on every switch, restarted by the manager when it dies, stopped
with its own signal and grace period. Cross-key rules (its secrets are defined in every environment,
no blue/green, no image artifact) are checked in :func:`slipway.config.check_host_services`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from slipway.model.base import Frozen, env_names
from slipway.model.checks import CheckSpec, HttpCheck, TcpCheck

#: Service names become program names and file names of the process manager.
HOST_SERVICE_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,40}$"
#: The signals a service may be stopped with (the process manager's names, without SIG).
StopSignal = Literal["TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2"]


class HostServiceConfig(Frozen):
    """One service of the app on a host (``deploy.services.web``): a supervised command of the release."""

    #: One command, run in ``<root>/current`` as ``exec COMMAND`` by /bin/sh (so the process manager watches
    #: and signals the app itself), templated like a hook (vars, host, release, paths).
    command: str = Field(min_length=1)
    #: The port instance 0 listens on (instance N: port + N), given to it as ``PORT``; readiness waits for it.
    #: A number, or a template rendered per host (``"{{ vars.port }}"``: environments on one machine).
    port: int | Annotated[str, Field(min_length=1)] | None = None
    #: How many processes of this command run on each host (``SLIPWAY_INSTANCE`` is 0, 1, ...).
    instances: int = Field(default=1, ge=1, le=64)
    #: Environment variables, templated with ``vars``, ``environment``, ``host`` and ``release``.
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: Names of the environment's ``secrets`` given to the service as variables of the same name.
    secrets: tuple[str, ...] = ()
    #: Checks (http, tcp; templated like ``deploy.checks``) a restarted service passes before the deploy
    #: goes on; default: each instance's port accepts connections.
    readiness: tuple[CheckSpec, ...] = ()
    #: Seconds a restarted service has to become ready (its port to accept connections).
    start_timeout: float = Field(default=30, gt=0, le=3600)
    #: The signal that stops the service (a graceful stop), then SIGKILL after ``stop_timeout``.
    stop_signal: StopSignal = "TERM"
    #: The grace period: seconds between ``stop_signal`` and SIGKILL.
    stop_timeout: int = Field(default=10, ge=0, le=3600)
    #: A service without port or readiness checks must still be running after this many seconds.
    settle: float = Field(default=1.0, gt=0, le=600)

    @field_validator("readiness")
    @classmethod
    def _readiness_kinds(cls, value: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
        for spec in value:
            if not isinstance(spec, HttpCheck | TcpCheck):
                raise ValueError(f"only http and tcp checks can test a service, not {spec.kind.value!r}")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        return env_names(value)

    @field_validator("stop_signal", mode="before")
    @classmethod
    def _signal_name(cls, value: Any) -> Any:
        return value.upper().removeprefix("SIG") if isinstance(value, str) else value

    @field_validator("port")
    @classmethod
    def _a_port(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError(f"port {value} is not between 1 and 65535")
        return value

    @model_validator(mode="after")
    def _ports_fit(self) -> HostServiceConfig:
        if isinstance(self.port, int):
            ports_of(self.port, self.instances)
        return self


def ports_of(port: int, instances: int) -> tuple[int, ...]:
    """The port of each instance from ``port``; ValueError saying why when they do not fit 1-65535."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not between 1 and 65535")
    if port + instances - 1 > 65535:
        raise ValueError(f"{instances} instances from port {port} go past port 65535 (instance N listens on port + N)")
    return tuple(port + i for i in range(instances))
