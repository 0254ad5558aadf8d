"""The image smoke test: start a container from the image, run its checks against it, remove it.

Checks of a smoke test (and of readiness, :mod:`slipway.targets.container`) are written against the
container: ``http://container:8080/health`` names the container's port 8080. That port is published
on a free loopback port and the check is pointed there (:func:`retarget_checks`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from slipway.artifacts.docker_engine import Engine, container_logs, remove_container
from slipway.artifacts.image_refs import LABEL, BuiltImage
from slipway.checks.runner import CheckResult, failed_required, run_checks
from slipway.clock import SystemClock
from slipway.errors import (
    CheckFailed,
    ConfigError,
)
from slipway.model.checks import CheckSpec, HttpCheck, TcpCheck
from slipway.ports import Clock

log = logging.getLogger(__name__)

#: The host name checks use for "the container under test"; its port is the container's port.
CONTAINER_HOST = "container"


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
