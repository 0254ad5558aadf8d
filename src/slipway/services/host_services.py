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

from slipway.checks.runner import raise_for_failures, run_checks
from slipway.config import LoadedConfig
from slipway.engine.masking import Masker
from slipway.engine.planner import HostInfo, ReleaseInfo
from slipway.engine.template import render
from slipway.errors import CheckFailed
from slipway.model.checks import Backoff, CheckSpec, TcpCheck
from slipway.model.host_services import HostServiceConfig
from slipway.ports import Clock, Target
from slipway.services import supervisor
from slipway.services.checks import host_context, render_checks
from slipway.services.releases import hosts_of


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

    def programs(self, target: Target, release: ReleaseInfo) -> dict[str, tuple[str, str]]:
        """Each service's program section and start script for ``release`` on ``target`` (no I/O)."""
        host = self._host(target.name)
        context = host_context(self.loaded, self.environment, release, host)
        layout = supervisor.Layout(target.root)
        out: dict[str, tuple[str, str]] = {}
        for name, service in self.services.items():
            where = f"deploy.services.{name}"
            command = render(service.command, context, shell=True, where=f"{where}.command")
            env = {
                "SLIPWAY_ENVIRONMENT": self.environment,
                "SLIPWAY_HOST": host.name,
                **{k: render(str(v), context, shell=False, where=f"{where}.env.{k}") for k, v in service.env.items()},
                **{k: self.secrets[k] for k in service.secrets},
            }
            out[name] = (supervisor.program_conf(layout, name, service),
                         supervisor.start_script(layout, name, service, command, env))
        return out

    def readiness(self, host: HostInfo, release: ReleaseInfo, name: str) -> tuple[CheckSpec, ...]:
        """The checks a restarted service passes: its own, else each instance's port accepting connections."""
        service = self.services[name]
        if service.readiness:
            context = host_context(self.loaded, self.environment, release, host)
            return render_checks(self.loaded, service.readiness, context, ("deploy", "services", name, "readiness"))
        # About start_timeout seconds of attempts, one every second at most.
        retries = min(100, math.ceil(service.start_timeout) + 2)
        return tuple(
            TcpCheck(name=f"{name}-{i} accepts connections on {host.address}:{port}", host=host.address, port=port,
                     timeout=1.0, retries=retries, backoff=Backoff(initial=0.1, factor=1.5, max=1.0))
            for i, port in enumerate(service.ports())
        )

    async def restart(self, target: Target, release: ReleaseInfo) -> str:
        """Install the services' programs for ``release``, restart each in order, wait until each is ready."""
        layout = supervisor.Layout(target.root)
        started = await supervisor.ensure_daemon(target, layout)
        await supervisor.install_programs(target, layout, self.programs(target, release))
        host = self._host(target.name)
        notes = ["supervisord started" if started else "supervisord running"]
        for name, service in self.services.items():
            await self._restart_one(target, layout, host, release, name)
            instances = f"{service.instances} instances" if service.instances > 1 else "1 instance"
            ports = f" on port {', '.join(map(str, service.ports()))}" if service.port else ""
            notes.append(f"{name}: {instances} running{ports}")
        return "; ".join(notes)

    async def _restart_one(
        self, target: Target, layout: supervisor.Layout, host: HostInfo, release: ReleaseInfo, name: str
    ) -> None:
        service = self.services[name]
        bound = service.stop_timeout + service.start_timeout + 60
        result = await supervisor.restart_program(target, layout, name, timeout=bound)
        try:
            if not result.ok or "ERROR" in result.stdout:
                said = (result.stdout + result.stderr).strip().splitlines()
                raise CheckFailed(f"supervisord could not start it ({'; '.join(said[-3:])})", check=f"{name} starts")
            checks = self.readiness(host, release, name)
            if checks:
                raise_for_failures(await run_checks(checks, clock=self.clock))
            else:
                await self.clock.sleep(service.settle)
            stopped = await supervisor.not_running(target, layout, name)
            if stopped:
                raise CheckFailed("it does not keep running: " + "; ".join(s.strip() for s in stopped),
                                  check=f"{name} is running")
        except CheckFailed as exc:
            tails = await supervisor.log_tails(target, layout, name, range(service.instances))
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

