"""Services on hosts (``deploy.services``): restart them on the release ``current`` points at, and wait.

The deployment's activate step (right after the switch, before the activate hooks) calls
:meth:`HostServices.restart` for each host; a revert and a rollback call it for the release they go back
to, so the earlier release's processes run again. The process manager is a supervisord of the deploy root
(:mod:`slipway.services.supervisor`): it restarts a service that dies, and stops it with its signal and
grace period. A service that does not start fails the step with the last lines of its own log.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slipway.checks.runner import raise_for_failures, run_checks
from slipway.config import LoadedConfig
from slipway.engine.masking import Masker
from slipway.engine.planner import HostInfo, ReleaseInfo
from slipway.engine.template import render
from slipway.errors import CheckFailed, ConfigError
from slipway.model.checks import Backoff, CheckSpec, TcpCheck
from slipway.model.host_services import HostServiceConfig, ports_of
from slipway.ports import Clock, Target
from slipway.services import supervisor
from slipway.services.checks import host_context, render_checks
from slipway.services.releases import hosts_of


@dataclass(frozen=True)
class RenderedService:
    """One service as it runs on one host for one release: its command, environment and ports."""

    name: str
    config: HostServiceConfig
    command: str
    env: Mapping[str, str]
    ports: tuple[int, ...]

    @property
    def port(self) -> int | None:
        """Instance 0's port."""
        return self.ports[0] if self.ports else None


def render_service(loaded: LoadedConfig, name: str, context: Mapping[str, Any]) -> RenderedService:
    """``deploy.services.NAME`` rendered with a host's template context; ConfigError at the key that fails."""
    service = loaded.project.deploy.services[name]
    at = ("deploy", "services", name)
    key = "command"
    try:
        command = render(service.command, context, shell=True, where=f"deploy.services.{name}.command")
        env = {}
        for var, value in service.env.items():
            key = f"env.{var}"
            env[var] = render(str(value), context, shell=False, where=f"deploy.services.{name}.env.{var}")
        key = "port"
        ports = _ports(service, context, f"deploy.services.{name}.port")
    except ConfigError as exc:
        raise loaded.error(exc.reason, (*at, *key.split(".")), hint=exc.hint) from None
    return RenderedService(name, service, command, env, ports)


def _ports(service: HostServiceConfig, context: Mapping[str, Any], where: str) -> tuple[int, ...]:
    if service.port is None:
        return ()
    text = str(service.port) if isinstance(service.port, int) else render(service.port, context, shell=False, where=where)
    try:
        return ports_of(int(text.strip()), service.instances)
    except ValueError as exc:
        reason = str(exc) if text.strip().lstrip("-").isdigit() else f"{text!r} is not a port"
        raise ConfigError(reason, key_path=where, hint="a port is a number from 1 to 65535") from None


def render_host_services(loaded: LoadedConfig, release: ReleaseInfo) -> int:
    """Render every service and its readiness checks for every host (``slipway validate``); the count."""
    count = 0
    for environment in loaded.project.environments:
        for host in hosts_of(loaded, environment):
            context = host_context(loaded, environment, release, host)
            for name, service in loaded.project.deploy.services.items():
                render_service(loaded, name, context)
                render_checks(loaded, service.readiness, context, ("deploy", "services", name, "readiness"))
                count += 1
    return count


@dataclass
class HostServices:
    """The services of one environment's hosts, as one deployment restarts them."""

    loaded: LoadedConfig
    environment: str
    #: The environment's resolved secrets (a service gets those it names).
    secrets: Mapping[str, str]
    clock: Clock
    masker: Masker

    @property
    def services(self) -> Mapping[str, HostServiceConfig]:
        """The services, in the order slipway.yml lists them (the order they restart in)."""
        return self.loaded.project.deploy.services

    def _host(self, name: str) -> HostInfo:
        return next(h for h in hosts_of(self.loaded, self.environment) if h.name == name)

    def rendered(self, host: HostInfo, release: ReleaseInfo) -> list[RenderedService]:
        """Every service as it runs on ``host`` for ``release``."""
        context = host_context(self.loaded, self.environment, release, host)
        return [render_service(self.loaded, name, context) for name in self.services]

    def programs(self, target: Target, services: list[RenderedService]) -> dict[str, tuple[str, str]]:
        """Each service's program section and start script on ``target`` (no I/O)."""
        layout = supervisor.Layout(target.root)
        out: dict[str, tuple[str, str]] = {}
        for service in services:
            env = {
                "SLIPWAY_ENVIRONMENT": self.environment,
                "SLIPWAY_HOST": target.name,
                **service.env,
                **{k: self.secrets[k] for k in service.config.secrets},
            }
            script = supervisor.start_script(layout, service.name, service.command, env, port=service.port)
            out[service.name] = (supervisor.program_conf(layout, service.name, service.config), script)
        return out

    def readiness(self, host: HostInfo, release: ReleaseInfo, service: RenderedService) -> tuple[CheckSpec, ...]:
        """The checks a restarted service passes: its own, else each instance's port accepting connections."""
        name, config = service.name, service.config
        if config.readiness:
            context = host_context(self.loaded, self.environment, release, host)
            return render_checks(self.loaded, config.readiness, context, ("deploy", "services", name, "readiness"))
        # About start_timeout seconds of attempts, one every second at most.
        retries = min(100, math.ceil(config.start_timeout) + 2)
        return tuple(
            TcpCheck(name=f"{name}-{i} accepts connections on {host.address}:{port}", host=host.address, port=port,
                     timeout=1.0, retries=retries, backoff=Backoff(initial=0.1, factor=1.5, max=1.0))
            for i, port in enumerate(service.ports)
        )

    async def restart(self, target: Target, release: ReleaseInfo) -> str:
        """Install the services' programs for ``release``, restart each in order, wait until each is ready."""
        host = self._host(target.name)
        services = self.rendered(host, release)  # a template error fails before the host is touched
        layout = supervisor.Layout(target.root)
        started = await supervisor.ensure_daemon(target, layout)
        await supervisor.install_programs(target, layout, self.programs(target, services))
        notes = ["supervisord started" if started else "supervisord running"]
        for service in services:
            await self._restart_one(target, layout, host, release, service)
            count = service.config.instances
            instances = f"{count} instances" if count > 1 else "1 instance"
            ports = f" on port {', '.join(map(str, service.ports))}" if service.ports else ""
            notes.append(f"{service.name}: {instances} running{ports}")
        return "; ".join(notes)

    async def _restart_one(
        self, target: Target, layout: supervisor.Layout, host: HostInfo, release: ReleaseInfo, service: RenderedService
    ) -> None:
        name, config = service.name, service.config
        bound = config.stop_timeout + config.start_timeout + 60
        result = await supervisor.restart_program(target, layout, name, timeout=bound)
        try:
            if not result.ok or "ERROR" in result.stdout:
                said = (result.stdout + result.stderr).strip().splitlines()
                raise CheckFailed(f"supervisord could not start it ({'; '.join(said[-3:])})", check=f"{name} starts")
            checks = self.readiness(host, release, service)
            if checks:
                raise_for_failures(await run_checks(checks, clock=self.clock))
            else:
                await self.clock.sleep(config.settle)
            stopped = await supervisor.not_running(target, layout, name)
            if stopped:
                raise CheckFailed("it does not keep running: " + "; ".join(s.strip() for s in stopped),
                                  check=f"{name} is running")
        except CheckFailed as exc:
            tails = await supervisor.log_tails(target, layout, name, range(config.instances))
            raise CheckFailed(
                f"service {name!r} did not start on {target.name}: {exc.message}",
                evidence=self.masker("its log, last lines:\n    " + "\n    ".join(tails.splitlines())),
                hint=f"the log is {layout.logs}/{name}-N.log on the host; the host goes back to the release it ran",
            ) from exc


def host_services(
    loaded: LoadedConfig, environment: str, *, secrets: Mapping[str, str], clock: Clock, masker: Masker
) -> HostServices | None:
    """The environment's services on hosts, or None when slipway.yml has no ``deploy.services``."""
    if not loaded.project.deploy.services:
        return None
    return HostServices(loaded, environment, secrets, clock, masker)
