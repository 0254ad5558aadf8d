"""The router and readiness gate of an environment, as the deployment runner's TrafficGate.

The runner speaks host names; this module maps them to the router's backends (``host.address`` and the
rendered ``router.port``) and to readiness URLs, and runs the readiness gate with slipway.checks' http
check: ``successes`` consecutive answers with ``expect_status`` within ``deadline``. With ``steps``, every
drain, enable and readiness gate is a recorded step of the deployment's stage (``slipway logs``).

:func:`read_rotation` reads back, for ``slipway status``, where each host stands in its group: in rotation,
drained (marked down), in the idle blue/green slot, not in the group, or unknown (with the reason).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from slipway.engine.events import Observer
from slipway.engine.steps import StepRunner
from slipway.engine.template import render
from slipway.errors import CheckFailed, ConfigError, DeploymentError, SlipwayError
from slipway.model.config import Environment
from slipway.model.routing import Backend, Router, RouterState
from slipway.model.traffic import NginxRouterConfig, ReadinessSpec
from slipway.ports import Clock, Target
from slipway.routers.nginx import Bootstrap, NginxRouter


@dataclass
class RouterGate:
    """A :class:`~slipway.engine.rollout.TrafficGate` over a Router and the readiness gate."""

    router: Router
    group: str
    backends: Mapping[str, Backend]
    readiness: ReadinessSpec
    urls: Mapping[str, str]
    clock: Clock
    observer: Observer
    out: set[str] = field(default_factory=set)
    #: Records every drain, enable and readiness gate as a step of the deployment's stage; None: messages only.
    steps: StepRunner | None = None

    async def prepare(self) -> None:
        """Make sure the group lists exactly this environment's hosts; keeps what is already right.

        The first deployment behind an nginx whose include file is missing writes it first (nginx need
        not run yet: it cannot start without the file), as ``slipway router bootstrap`` does.
        """
        if isinstance(self.router, NginxRouter):
            await ensure_upstream(self.router, self.group, list(self.backends.values()), self.observer)
        wanted = {(b.host, b.port) for b in self.backends.values()}
        state: RouterState | None
        try:
            state = await self.router.current(self.group)
        except DeploymentError:  # the group does not exist yet: create it below
            state = None
        if state is not None and {(b.host, b.port) for b in state.backends} == wanted:
            self.out = {
                h
                for h, b in self.backends.items()
                if any((s.host, s.port) == (b.host, b.port) and s.down for s in state.backends)
            }
            return
        self.observer.message(
            f"router: upstream {self.group} -> {', '.join(b.address for b in self.backends.values())}"
        )
        await self.router.set_upstream(self.group, list(self.backends.values()))
        self.out = set()

    async def take_out(self, hosts: Sequence[str]) -> None:
        """Drain each host (in-flight requests finish) before anything on it changes."""
        for host in hosts:
            if host in self.out:
                continue
            backend = self.backends[host]
            # Counted out before the router is asked: a drain that fails half-way (nginx reloaded, then did
            # not confirm) is put back all the same when the batch ends in an error (engine/rollout.py).
            self.out.add(host)

            async def drain(backend: Backend = backend) -> str:
                await self.router.drain(self.group, backend)
                return f"{backend.address} taken out of upstream {self.group}; its in-flight requests finished"

            await self._recorded(host, "router: drain", drain, f"router: draining {host} ({backend.address})")

    async def put_back(self, hosts: Sequence[str]) -> None:
        """Enable each host again."""
        for host in hosts:
            if host not in self.out:
                continue
            backend = self.backends[host]

            async def enable(backend: Backend = backend) -> str:
                await self.router.enable(self.group, backend)
                return f"{backend.address} back in upstream {self.group}"

            await self._recorded(host, "router: enable", enable, f"router: putting {host} back in rotation")
            self.out.discard(host)

    async def _recorded(self, host: str, label: str, action: Callable[[], Awaitable[str]], message: str) -> None:
        """Run one router action; with ``steps``, as a recorded step of the stage (``slipway logs`` shows it)."""
        if self.steps is None:
            self.observer.message(message)
            await action()
            return
        # A step is recorded under a target's name; the router acts for this host, it is not its shell Target.
        await self.steps.run_builtin(cast(Target, SimpleNamespace(name=host)), label, action)

    async def close(self) -> None:
        """Close the router's connection (nginx on another host, over SSH)."""
        if isinstance(self.router, NginxRouter):
            await self.router.close()

    def is_out(self, host: str) -> bool:
        """Whether ``host`` is out of rotation."""
        return host in self.out

    async def ready(self, host: str) -> None:
        """``successes`` consecutive good answers from the host within ``deadline``; else CheckFailed."""
        if self.steps is None:
            await self._ready(host)
            return
        await self._recorded(host, "readiness", lambda: self._ready(host), "")

    async def _ready(self, host: str) -> str:
        import httpx  # with the check runner: for deployments only, not for 'slipway status'

        from slipway.checks.runner import CheckRunner
        from slipway.model.checks import HttpCheck

        spec = self.readiness
        check = HttpCheck(
            name=f"readiness {host}", url=self.urls[host], expect_status=spec.expect_status, timeout=spec.timeout
        )
        deadline = self.clock.monotonic() + spec.deadline
        streak, attempts, last = 0, 0, ""
        async with httpx.AsyncClient(follow_redirects=False) as client:
            runner = CheckRunner(clock=self.clock, http_client=client)
            while True:
                result = await runner.run(check)
                attempts += 1
                streak = streak + 1 if result.ok else 0
                last = result.evidence
                if streak >= spec.successes:
                    note = f"ready: {spec.successes} good answer(s) in a row ({last})"
                    if self.steps is None:
                        self.observer.message(f"[{host}] {note}")
                    return note
                if self.clock.monotonic() >= deadline:
                    raise CheckFailed(
                        f"readiness of {host} failed: no {spec.successes} good answer(s) in a row within "
                        f"{spec.deadline:g}s ({attempts} attempt(s)); last: {last}"
                    )
                await self.clock.sleep(spec.interval)


async def ensure_upstream(
    router: NginxRouter, group: str, backends: Sequence[Backend], observer: Observer
) -> Bootstrap:
    """Before a deployment's first router change: write the group's file if it is missing (and say so)."""
    done = await router.bootstrap(group, backends)
    if done.written:
        observer.message(f"router: {done.summary()}")
    return done


def nginx_router(spec: NginxRouterConfig, *, root: Path | None = None, clock: Clock | None = None) -> NginxRouter:
    """The environment's nginx, on this machine or (``router.host``) on another one over SSH.

    ``root``: the directory of slipway.yml, which relative key and known_hosts paths are relative to.
    Close it (:meth:`NginxRouter.close`) when done.
    """
    if spec.host is None:
        return NginxRouter.from_config(spec, clock=clock)
    from slipway.model.config import SSHTargetSpec
    from slipway.services.app import make_target

    host = spec.host
    target = make_target(
        SSHTargetSpec(
            name="router", address=host.address, port=host.port, user=host.user, key=host.key,
            known_hosts=host.known_hosts, accept_new_host_keys=host.accept_new_host_keys,
            connect_timeout=host.connect_timeout, path="/", agent_idle=0,  # a few commands; nothing left there
        ),
        root=root or Path.cwd(), environ={},
    )
    return NginxRouter.from_config(spec, target=target, clock=clock)


def traffic_gate(
    env: Environment,
    *,
    environment: str,
    contexts: Mapping[str, Mapping[str, object]],
    clock: Clock,
    observer: Observer,
    root: Path | None = None,
) -> RouterGate | None:
    """The environment's gate, or None without a ``router:`` block. ``contexts``: host -> template vars.

    ``root``: slipway.yml's directory (for ``router.host``'s key paths); close the gate's router when done.
    """
    spec = env.router
    if spec is None:
        return None
    readiness = env.readiness or ReadinessSpec()
    backends: dict[str, Backend] = {}
    urls: dict[str, str] = {}
    for host, ctx in contexts.items():
        port = _port(spec.port, ctx, f"environments.{environment}.router.port")
        address = str(ctx["host"]["address"])  # type: ignore[index]
        backends[host] = Backend(host=address, port=port)
        probe = (
            port if readiness.port is None else _port(readiness.port, ctx, f"environments.{environment}.readiness.port")
        )
        host_part = f"[{address}]" if ":" in address else address
        urls[host] = f"http://{host_part}:{probe}{readiness.path}"
    router = nginx_router(spec, root=root, clock=clock)
    return RouterGate(router, spec.group, backends, readiness, urls, clock, observer)


def _port(value: int | str, ctx: Mapping[str, object], where: str) -> int:
    text = render(str(value), dict(ctx), shell=False, where=where)
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{where} rendered to {text!r}, not a port number", key_path=where)
    return int(text)


# -- what the router does for each host now (slipway status) ---------------------------------------------

IN_ROTATION = "in rotation"
DRAINED = "drained"
IDLE_SLOT = "idle slot"
NOT_IN_GROUP = "not in group"
UNKNOWN = "unknown"
#: How long ``slipway status`` waits for the router before it says "unknown".
READ_TIMEOUT = 10.0


@dataclass(frozen=True)
class Rotation:
    """Each host's place in its environment's router group, or why the router could not be read."""

    group: str
    hosts: Mapping[str, str]
    error: str | None = None


def host_rotation(state: RouterState, wanted: Sequence[tuple[str, int | None]]) -> str:
    """One host's state in ``state``: its backends are those at ``(address, port)`` (port None: any)."""
    mine = [b for b in state.backends if any(b.host == a and p in (None, b.port) for a, p in wanted)]
    if not mine:
        return NOT_IN_GROUP
    if any(b in state.serving for b in mine):
        return IN_ROTATION
    if any(b.down and state.active_slot in (None, b.slot) for b in mine):
        return DRAINED  # marked down: nginx sends it no request
    return IDLE_SLOT


async def read_rotation(
    router: Router, group: str, wanted: Mapping[str, Sequence[tuple[str, int | None]]], *, timeout: float = READ_TIMEOUT
) -> Rotation:
    """Read the group once; every host "unknown" with the reason when the router cannot be read in time."""
    try:
        state = await asyncio.wait_for(router.current(group), timeout)
    except TimeoutError:
        return Rotation(group, dict.fromkeys(wanted, UNKNOWN), f"the router did not answer within {timeout:g}s")
    except (SlipwayError, OSError) as exc:  # never a traceback: the reason, and "unknown" for every host
        return Rotation(group, dict.fromkeys(wanted, UNKNOWN), " ".join(str(exc).split()) or type(exc).__name__)
    return Rotation(group, {host: host_rotation(state, backends) for host, backends in wanted.items()})
