"""Blue/green deployments and switches back (docs/strategies.md, "blue_green").

A deployment installs the release in the idle slot of every host and verifies it there (hooks, checks,
readiness of each host's idle backend) while the active slot serves; then the router switches to it.
``slipway rollback ENV`` on a blue/green environment switches back to the warm slot when it holds the
release asked for: no install, no restart unless the warm slot fails its readiness gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slipway.artifacts.archive import Manifest
from slipway.clock import SystemClock
from slipway.config import LoadedConfig
from slipway.engine.bluegreen import BlueGreenRun
from slipway.engine.deploy import run_deployment
from slipway.engine.planner import DeploymentPlan, HostInfo, PlanStep, ReleaseInfo, plan_deployment, template_context
from slipway.engine.slots import SlotInfo, idle_slot, slot_root
from slipway.engine.steps import StepRunner
from slipway.engine.strategy import BlueGreen, CircuitBreakerPolicy
from slipway.engine.template import render
from slipway.errors import CommandResult, ConfigError, DeploymentError
from slipway.model.config import Environment
from slipway.model.records import HostRelease
from slipway.model.routing import Backend
from slipway.model.states import DeploymentKind
from slipway.model.traffic import ReadinessSpec
from slipway.ports import OutputSink, Target
from slipway.routers.nginx import NginxRouter
from slipway.services import migrations as database
from slipway.services.app import App, make_target
from slipway.services.checks import DeploymentChecks, deployment_checks
from slipway.services.envlock import environment_lock
from slipway.services.releases import (
    DeployRequest,
    artifact_commit_of,
    environment_url,
    fresh_release_id,
    hosts_of,
    revert_steps,
)
from slipway.services.secrets import resolve_secrets
from slipway.services.traffic import RouterGate, _port, nginx_router
from slipway.store.repository import Store
from slipway.targets import release as layout


def strategy_of(env: Environment) -> BlueGreen | None:
    """The environment's blue/green strategy, or None when it uses another one."""
    return env.strategy if isinstance(env.strategy, BlueGreen) else None


def slot_hosts(loaded: LoadedConfig, environment: str, slot: str) -> list[HostInfo]:
    """The planner's view of every host's ``slot``: its layout, and its vars over the host's."""
    strategy = strategy_of(loaded.project.environments[environment])
    assert strategy is not None
    info = SlotInfo(slot, dict(strategy.slot_vars.get(slot, {})))
    return [HostInfo(h.name, h.root, h.roles, h.vars, h.address, slot=info) for h in hosts_of(loaded, environment)]


@dataclass
class SlotTarget:
    """A host's target seen through one slot: the same connection, the slot's layout as its root."""

    inner: Target
    root: str
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.inner.name

    async def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        on_output: OutputSink | None = None,
        contained: bool = False,
    ) -> CommandResult:
        """Run on the host."""
        return await self.inner.run(
            command, stdin=stdin, env=env, cwd=cwd, timeout=timeout, on_output=on_output, contained=contained
        )

    async def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        """Write a file on the host."""
        await self.inner.put(data, path, mode=mode)

    async def read(self, path: str) -> bytes:
        """Read a file on the host."""
        return await self.inner.read(path)

    async def close(self) -> None:
        """Close the host's connection."""
        await self.inner.close()


class SlotLedger:
    """The store as a deployment of one slot sees it: moving a slot's ``current`` records that slot.

    The deployment engine records every switch of ``current`` as the release a host runs. In blue/green
    the idle slot's switch changes nothing users see, so it is recorded as what the slot holds; which
    release a host *serves* changes only with the router's switch (:meth:`Store.set_serving_slot`).
    Everything else goes to the store unchanged.
    """

    def __init__(self, store: Store, slot: str) -> None:
        self._store = store
        self._slot = slot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def set_host_release(self, **record: Any) -> None:
        """Record the release the slot holds now."""
        self._store.set_slot_release(slot=self._slot, **record)

    def host_releases(self, environment: str | None = None) -> list[HostRelease]:
        """What the slot holds on each host, as the engine's 'before' (for switching the slot back)."""
        assert environment is not None
        return [
            HostRelease(r.environment, r.host, r.release_id, r.artifact_digest, r.commit, r.since, r.deployment_id, r.run_id)
            for r in self._store.slot_releases(environment)
            if r.slot == self._slot
        ]


@dataclass
class SlotGate:
    """The router for blue/green: both slots' backends, readiness of one slot's, and the switch."""

    router: NginxRouter
    group: str
    #: slot -> host -> backend.
    backends: Mapping[str, Mapping[str, Backend]]
    readiness: Mapping[str, RouterGate]
    active: str | None = None
    #: What the router lists now: (host, port, slot, down).
    listed: set[tuple[str, int, str | None, bool]] = field(default_factory=set)

    async def load(self) -> None:
        """Read the router's group (missing: no slot serves yet)."""
        try:
            state = await self.router.current(self.group)
        except DeploymentError:
            return
        self.active = state.active_slot if state.active_slot in self.backends else None
        self.listed = {(b.host, b.port, b.slot, b.down) for b in state.backends}

    async def switch_to(self, slot: str) -> None:
        """List both slots' backends (``slot``'s in rotation) if needed, then route the group to ``slot``."""
        up = {(h, p, s) for h, p, s, down in self.listed if not down}
        # A backend of the other slot that the router did not have in rotation is not known to run: down.
        wanted = [
            b if b.slot == slot or (b.host, b.port, b.slot) in up else b.model_copy(update={"down": True})
            for backends in self.backends.values()
            for b in backends.values()
        ]
        if {(b.host, b.port, b.slot, b.down) for b in wanted} != self.listed:
            await self.router.set_upstream(self.group, wanted)
            self.listed = {(b.host, b.port, b.slot, b.down) for b in wanted}
        await self.router.switch(self.group, slot)
        self.active = slot

    async def close(self) -> None:
        """Close the router's connection (``router.host``: nginx on another machine, over SSH)."""
        await self.router.close()


def slot_gate(
    loaded: LoadedConfig, environment: str, release: ReleaseInfo, *, observer: Any, clock: Any = None
) -> SlotGate:
    """The environment's router with both slots' backends (each slot's port rendered with its vars).

    The router may be on another machine (``router.host``): close the gate (:meth:`SlotGate.close`) when done.
    """
    env = loaded.project.environments[environment]
    strategy, spec = strategy_of(env), env.router
    assert strategy is not None and spec is not None
    readiness = env.readiness or ReadinessSpec()
    clock = clock or SystemClock()
    router = nginx_router(spec, root=loaded.root, clock=clock)
    url = environment_url(loaded.project, environment)
    backends: dict[str, dict[str, Backend]] = {}
    gates: dict[str, RouterGate] = {}
    for slot in strategy.slots:
        backends[slot], urls = {}, {}
        for host in slot_hosts(loaded, environment, slot):
            ctx = template_context(
                project=loaded.project, environment=environment, env=env, host=host, release=release, url=url
            )
            port = _port(spec.port, ctx, f"environments.{environment}.router.port")
            probe = port if readiness.port is None else _port(readiness.port, ctx, f"environments.{environment}.readiness.port")
            backends[slot][host.name] = Backend(host=host.address, port=port, slot=slot)
            address = f"[{host.address}]" if ":" in host.address else host.address
            urls[host.name] = f"http://{address}:{probe}{readiness.path}"
        gates[slot] = RouterGate(router, spec.group, backends[slot], readiness, urls, clock, observer)
    _refuse_shared_backends(environment, strategy.slots, backends)
    return SlotGate(router, spec.group, backends, gates)


def _refuse_shared_backends(
    environment: str, slots: Sequence[str], backends: Mapping[str, Mapping[str, Backend]]
) -> None:
    first, second = slots
    for host, backend in backends[first].items():
        if backend.address == backends[second][host].address:
            raise ConfigError(
                f"environment {environment}: slots {first} and {second} of {host} both listen on {backend.address}",
                key_path=f"environments.{environment}.strategy.slot_vars",
                hint=f"give each slot its own port, e.g. slot_vars: {{{first}: {{port: 8001}}, {second}: {{port: 8002}}}}",
            )


def _render(template: str, context: dict[str, object], where: str) -> str:
    return render(template, context, shell=True, where=where)


def slot_targets(app: App, loaded: LoadedConfig, environment: str, slot: str) -> dict[str, Target]:
    env = loaded.project.environments[environment]
    gate = asyncio.Semaphore(env.max_connecting)
    roots = {h.name: slot_root(h.root, slot) for h in hosts_of(loaded, environment)}
    return {
        t.name: SlotTarget(make_target(t, root=loaded.root, environ=app.environ, connect_gate=gate), roots[t.name])
        for t in env.targets
    }


async def _share_objects(targets: Mapping[str, Target]) -> None:
    """Let both slots of each host keep file contents in the host's one object store.

    A slot's first deployment then sends only what the host lacks. Best effort: an unreachable host fails
    the deployment right after, with its evidence, and a slot that keeps its own store still works.
    """
    await asyncio.gather(
        *(
            layout.share_object_store(t, f"{t.inner.root}/{layout.OBJECTS}")
            for t in targets.values()
            if isinstance(t, SlotTarget)
        ),
        return_exceptions=True,
    )


def slot_revert_steps(
    loaded: LoadedConfig, environment: str, slot: str, host: str, before: HostRelease
) -> Sequence[PlanStep]:
    """The activate hooks of the release ``slot`` held before, to restart that slot's app."""
    info = next(h for h in slot_hosts(loaded, environment, slot) if h.name == host)
    return revert_steps(loaded, environment, host, before, info=info)


def _idle_breaker(policy: CircuitBreakerPolicy | None) -> CircuitBreakerPolicy | None:
    """A switch needs the whole idle slot: one failed host stops it (``auto_rollback: false`` still halts)."""
    if policy is None or policy.auto_rollback:
        return None
    return CircuitBreakerPolicy(threshold=1, min_threshold=1, max_threshold=1, auto_rollback=False)


async def deploy(app: App, loaded: LoadedConfig, request: DeployRequest) -> str:
    """Deploy to the idle slot of every host, verify it there, then switch the router to it."""
    assert request.kind is not DeploymentKind.ROLLBACK  # deployments.deploy sends it to switchback.switch_back
    name, project = request.environment, loaded.project
    env = project.environments[name]
    secrets = resolve_secrets(env, environment=name, root=loaded.root, environ=app.environ)
    app.masker.add(secrets.values())
    manifest = app.artifacts.manifest(request.digest)  # verifies the archive, and the manifest against it
    artifact_commit = artifact_commit_of(app, request.digest, manifest.commit)
    release = ReleaseInfo(
        request.release_id or fresh_release_id(app, name, request.digest),
        request.digest,
        request.commit or artifact_commit,
        artifact_commit,
    )
    gate = slot_gate(loaded, name, release, observer=app.observer)
    try:
        await gate.load()
        strategy = strategy_of(env)
        assert strategy is not None
        slot = idle_slot(strategy.slots, gate.active)
        hosts = slot_hosts(loaded, name, slot)
        url = environment_url(project, name)
        plan = plan_deployment(project=project, environment=name, hosts=hosts, release=release, render=_render, url=url)
        checks = deployment_checks(
            app, loaded, environment=name, release=release, hosts=hosts, stage_id=request.stage_id, secrets=secrets
        )
        await checks.before()
        app.observer.message(
            f"blue/green: {gate.active or 'no slot'} serves {name}; release {release.id} goes to the idle slot {slot}"
        )
        with environment_lock(app, name, run_id=request.run_id):
            migrations = await database.for_deployment(
                app, loaded, environment=name, digest=request.digest, release=release.id, stage_id=request.stage_id,
                rollback=False,
            )
            targets = slot_targets(app, loaded, name, slot)
            try:
                await _share_objects(targets)
                run = _run(app, loaded, request, plan, targets, gate, slot, checks, manifest, secrets)
                run.before_migrate = migrations.expand if migrations else None
                run.ledger.served = {r.host: r.release_id for r in app.store.host_releases(name)}
                await run_deployment(run)
                checks.raise_kept()
            finally:
                await asyncio.gather(*(t.close() for t in targets.values()), return_exceptions=True)
        if migrations:  # the warm slot still runs the release before: contract migrations would break it
            app.observer.message(
                f"contract migrations are held while the warm slot may serve again: run "
                f"'slipway migrations contract {name}' once you will not switch back"
            )
        return release.id
    finally:
        await gate.close()


def _run(
    app: App,
    loaded: LoadedConfig,
    request: DeployRequest,
    plan: DeploymentPlan,
    targets: Mapping[str, Target],
    gate: SlotGate,
    slot: str,
    checks: DeploymentChecks,
    manifest: Manifest,
    secrets: Mapping[str, str],
) -> BlueGreenRun:
    """The deployment of ``slot``: verified by its hooks, checks and readiness; then the switch."""
    name, store, release = request.environment, app.store, plan.release
    env = loaded.project.environments[name]
    deployment_id = store.start_deployment(
        environment=name, kind=request.kind, run_id=request.run_id, artifact_digest=request.digest,
        release_id=release.id, deployed_by=app.settings.actor, reason=request.reason, strategy=plan.strategy,
    )
    steps = StepRunner(
        store=store, stage_id=request.stage_id, observer=app.observer, masker=app.masker,
        env={
            **secrets, "SLIPWAY_ENVIRONMENT": name, "SLIPWAY_RELEASE_ID": release.id,
            "SLIPWAY_COMMIT": release.commit, "SLIPWAY_DIGEST": release.digest,
        },
    )
    artifacts, ready = app.artifacts, gate.readiness[slot]

    async def source(wanted: set[str]) -> dict[str, bytes]:
        return await asyncio.to_thread(artifacts.read_objects, request.digest, wanted, verified=True)

    async def verify(target: Target) -> None:
        await checks.verify_host(target)
        await ready.ready(target.name)  # the idle backend answers before it may take traffic

    def serve(new: str) -> None:
        store.set_serving_slot(name, new, actor=app.settings.actor)

    return BlueGreenRun(
        plan=plan, targets=targets, steps=steps, store=SlotLedger(store, slot),
        deployment_id=deployment_id, run_id=request.run_id, manifest=manifest, source=source,
        shared=loaded.project.deploy.shared, keep_releases=loaded.project.deploy.keep_releases,
        revert_steps=lambda host, before: slot_revert_steps(loaded, name, slot, host, before),
        parallel=env.parallel, verify_host=verify, halt_on_failed_check=checks.halt,
        breaker=_idle_breaker(env.circuit_breaker),
        slot=slot, serving=gate.active, router=gate, on_switch=serve,
        smoke=checks.verify_environment if checks.has_environment_checks else None,
    )
