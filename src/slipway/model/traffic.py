"""How an environment takes traffic: its router and the readiness gate a host passes before it serves.

Both are parsed from slipway.yml (docs/strategies.md). ``router.port`` and ``readiness.port`` may be
templates (``"{{ vars.port }}"``), rendered per host when a deployment starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slipway.model.base import SSHEndpoint


class RouterHostSpec(SSHEndpoint):
    """``router.host``: the machine nginx runs on, reached over SSH like an ``ssh`` target."""


class NginxRouterConfig(BaseModel):
    """``router: {kind: nginx, ...}`` in an environment of slipway.yml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["nginx"] = "nginx"
    #: The upstream group this environment's hosts form (``proxy_pass http://slipway_<group>;``).
    group: str = Field(default="app", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    #: Directory Slipway owns; nginx.conf must ``include <conf_dir>/*.conf;`` inside ``http {}``.
    conf_dir: str = "/etc/nginx/slipway"
    #: ``-c`` and ``-p`` for nginx; None means the system defaults.
    config: str | None = None
    prefix: str | None = None
    pid_file: str = "/run/nginx.pid"
    nginx: str = "nginx"
    drain_timeout: float = Field(default=30.0, ge=0)
    reload_timeout: float = Field(default=10.0, gt=0)
    #: Where nginx runs: None is the machine running Slipway; else a host reached over SSH.
    host: RouterHostSpec | None = None


class NginxRouterSpec(NginxRouterConfig):
    """``router: {kind: nginx, ...}``: the nginx settings plus the port every host's app listens on."""

    #: The backend port of each host (a number or a template such as ``"{{ vars.port }}"``).
    port: int | str = "{{ vars.port }}"


class ReadinessSpec(BaseModel):
    """The health gate a host passes before it (re)enters the router's rotation.

    ``successes`` consecutive answers with ``expect_status`` from ``http://<host.address>:<port><path>``,
    polled every ``interval`` seconds, each within ``timeout``; the host fails the gate after ``deadline``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = "/health"
    #: The port to probe; default: the router's port.
    port: int | str | None = None
    expect_status: int = Field(default=200, ge=100, le=599)
    timeout: float = Field(default=2.0, gt=0, le=60)
    successes: int = Field(default=3, ge=1, le=100)
    interval: float = Field(default=0.2, ge=0, le=60)
    deadline: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"expected a URL path starting with '/', got {value!r}")
        return value
