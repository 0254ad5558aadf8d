"""Fleet commands beyond deploys: ``slipway exec ENV -- CMD`` runs one command on every host of an
environment (or those with a role), in parallel, its output streamed per host, and records who ran what
where in the audit log (masked). It changes no record of what runs where: it is a person's ad-hoc command.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from shlex import quote

from slipway.errors import ConfigError, TargetError
from slipway.model.config import TargetSpec
from slipway.model.containers import ContainerTargetSpec
from slipway.model.states import State
from slipway.ports import Target
from slipway.services.app import App, make_target
from slipway.services.environments import require_environment
from slipway.services.secrets import resolve_secrets

#: The container engine's command for what a fleet command does on hosts.
CONTAINER_VERB = {"slipway exec": "exec", "slipway app logs": "logs", "slipway app status": "ps"}


@dataclass(frozen=True)
class HostOutcome:
    """How the command went on one host: its exit code, or the transport error that kept it from running."""

    host: str
    exit_code: int | None
    duration: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""
        return self.exit_code == 0


def chosen_targets(app: App, environment: str, roles: tuple[str, ...], *, command: str = "slipway exec") -> list[TargetSpec]:
    """The environment's host targets with one of ``roles`` (all of them without roles); ConfigError for none,
    and for containers (``command`` names what refuses them)."""
    env = require_environment(app.config.project, environment)
    chosen = [t for t in env.targets if not roles or set(t.roles) & set(roles)]
    if not chosen:
        have = sorted({r for t in env.targets for r in t.roles})
        raise ConfigError(
            f"no target of {environment} has the role {' or '.join(roles)}",
            hint="roles there: " + (", ".join(have) if have else "none (drop --role)"),
        )
    containers = [t.name for t in chosen if isinstance(t, ContainerTargetSpec)]
    if containers:
        raise ConfigError(
            f"{environment}'s target{'s' if len(containers) > 1 else ''} {', '.join(containers)} "
            f"{'are containers' if len(containers) > 1 else 'is a container'}: '{command}' is for hosts",
            hint="use the container engine's own command for a container "
            f"(podman {CONTAINER_VERB.get(command, 'exec')}, docker {CONTAINER_VERB.get(command, 'exec')})",
        )
    return chosen


async def exec_everywhere(
    app: App, environment: str, command: str, *, roles: tuple[str, ...] = (), timeout: float | None = None
) -> list[HostOutcome]:
    """Run ``command`` (a POSIX shell command) on each chosen host of ``environment``, in the release that
    runs there (``current``; the deploy root on a host that has none), at most ``parallel`` hosts at a time.
    Output lines go to the observer as each host prints them, masked. Audited ``fleet.exec``."""
    if not command.strip():
        raise ConfigError("no command to run", hint="slipway exec ENV -- COMMAND")
    specs = chosen_targets(app, environment, roles)
    env = app.config.project.environments[environment]
    app.masker.add(resolve_secrets(env, environment=environment, root=app.root, environ=app.environ).values())
    shown = app.masker(command)
    hosts = [s.name for s in specs]
    app.store.audit(app.settings.actor, "fleet.exec", f"environment {environment}", {"command": shown, "hosts": hosts})
    gate, slots = asyncio.Semaphore(env.max_connecting), asyncio.Semaphore(env.parallel)
    targets = [make_target(s, root=app.root, environ=app.environ, connect_gate=gate) for s in specs]

    async def one(target: Target) -> HostOutcome:
        async with slots:
            return await _run_on(app, target, command, label=shown, timeout=timeout)

    outcomes = await asyncio.gather(*(one(t) for t in targets))
    app.store.audit(
        app.settings.actor, "fleet.exec.done", f"environment {environment}",
        {"command": shown, "exit_codes": {o.host: o.exit_code for o in outcomes},
         "errors": {o.host: o.error for o in outcomes if o.error}},
    )
    return list(outcomes)


async def _run_on(app: App, target: Target, command: str, *, label: str, timeout: float | None) -> HostOutcome:
    started = time.monotonic()
    app.observer.step_started(target.name, label)
    root = quote(target.root)
    missing = quote(f"slipway exec: {target.root} does not exist on this host: nothing was deployed here yet")
    wrapped = f"cd -- {root}/current 2>/dev/null || cd -- {root} 2>/dev/null || {{ echo {missing} >&2; exit 125; }}\n{command}"

    def output(stream: str, line: str) -> None:
        app.observer.output(target.name, stream, app.masker(line))

    try:
        result = await target.run(wrapped, timeout=timeout, on_output=output)
    except TargetError as exc:
        duration = time.monotonic() - started
        app.observer.step_finished(target.name, label, State.FAILED, None, duration)
        return HostOutcome(target.name, None, duration, app.masker(exc.message.splitlines()[0]))
    finally:
        await target.close()
    duration = time.monotonic() - started
    state = State.SUCCEEDED if result.ok else State.FAILED
    app.observer.step_finished(target.name, label, state, result.exit_code, duration)
    return HostOutcome(target.name, result.exit_code, duration)
