"""Deploying an image to an environment's container targets: the container kind of unit.

The rollout is the engine's, as for release directories on hosts (docs/strategies.md): batches in the
strategy's order, the circuit breaker, halt, the canary bake and ``on_success: pause``, reverts, the
environment's checks, progress events and the records (:mod:`slipway.engine.rollout`). A container
target (one engine) is the unit; :class:`ContainerUnits` supplies the primitives:

* before the first batch, each target's running containers are read (the digest the store records
  wins), the router is made to route to exactly those, and orphans of an interrupted deployment go;
* deploying a target is :func:`~slipway.targets.container.deploy_services`: pull the digest, start the
  new containers in dependency order, wait for their readiness checks, add them to the router and drain
  the old ones, then stop the old ones; a target that fails is left as it was (all or nothing);
* a canary bake runs each service's readiness checks again;
* reverting a target deploys the image it ran before the same way;
* the store hears which digest runs on which target right after each target switched, and again after a
  revert, so ``slipway status`` tells the truth whatever happens next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slipway.artifacts.image import ImageRef
from slipway.config import LoadedConfig
from slipway.engine.events import Observer
from slipway.engine.history import back_to_last_good
from slipway.engine.pause import Resumed
from slipway.engine.planner import ReleaseInfo, plan_rollout
from slipway.engine.rollout import Rollout, is_check_failure
from slipway.engine.steps import StepRunner
from slipway.engine.units import Ledger, RolloutControl
from slipway.errors import DeploymentError, HostOutcome, RetireFailed, SlipwayError
from slipway.model.config import Environment
from slipway.model.containers import ContainerTargetSpec
from slipway.model.states import DeploymentKind
from slipway.ports import DeploymentStore
from slipway.routers.shared import SharedGroups
from slipway.services import canary
from slipway.services.app import App
from slipway.services.checks import deployment_checks
from slipway.services.containers import image_artifact, image_ref, recorded, registry_of, service_specs
from slipway.services.envlock import environment_lock
from slipway.services.releases import DeployRequest, fresh_release_id
from slipway.services.secrets import resolve_secrets
from slipway.targets.container import ContainerTarget, RunningService, ServiceSpec, ServiceUnits, deploy_services
from slipway.targets.engines import OpenEngine, open_engine


async def deploy_containers(
    app: App, loaded: LoadedConfig, request: DeployRequest, resume: canary.Resume | None = None
) -> str:
    """Deploy (or roll back to) an image digest on every container target of an environment.

    ``resume``: the parked canary deployment this request picks up (approved or rejected).
    """
    project = loaded.project
    env = project.environments[request.environment]
    secrets = resolve_secrets(env, environment=request.environment, root=loaded.root, environ=app.environ)
    app.masker.add(secrets.values())
    registry = registry_of(app, loaded)
    ref = image_ref(loaded, request.digest)
    record = app.store.get_artifact(request.digest)
    commit = request.commit or (record.commit if record else "unknown")
    release_id = (
        (resume.release_id if resume else None)
        or request.release_id
        or fresh_release_id(app, request.environment, request.digest)
    )
    release = ReleaseInfo(release_id, request.digest, commit)
    rollback = request.kind is DeploymentKind.ROLLBACK
    checks = deployment_checks(app, loaded, environment=request.environment, release=release, hosts=[],
                               stage_id=request.stage_id, secrets=secrets, rollback=rollback)
    specs = {t.name: service_specs(loaded, request.environment, _spec(t), secrets, release) for t in env.targets}
    await checks.before()  # an open dependency breaker fails fast, before any engine is touched
    engines = await open_engines([_spec(t) for t in env.targets], loaded, timeout=image_artifact(project).timeout)
    units: ContainerUnits | None = None
    try:
        targets = {
            name: ContainerTarget(opened.engine, app=project.name, environment=request.environment,
                                  credentials=registry.credentials, instance=name)
            for name, opened in engines.items()
        }
        steps = StepRunner(store=app.store, stage_id=request.stage_id, observer=app.observer, masker=app.masker)
        units = ContainerUnits(
            store=app.store, observer=app.observer, steps=steps, environment=request.environment, env=env,
            targets=targets, specs=specs, release=release, repository=ref.repository, run_id=request.run_id,
            root=loaded.root,
        )
        with environment_lock(app, request.environment, run_id=request.run_id):
            units.deployment_id = canary.take_up(app, resume) if resume else app.store.start_deployment(
                environment=request.environment, kind=request.kind, run_id=request.run_id,
                artifact_digest=request.digest, release_id=release.id, deployed_by=app.settings.actor,
                reason=request.reason, strategy=env.strategy.kind.value if env.strategy is not None else "all_at_once",
            )
            await Rollout(
                units=units, log=app.store, deployment_id=units.deployment_id, run_id=request.run_id,
                observer=app.observer, batches=plan_rollout(list(targets), env, rollback=rollback),
                breaker=env.circuit_breaker, halt_on_failed_check=checks.halt,
                verify_environment=checks.verify_environment if checks.has_environment_checks else None,
                resumed=resume.resumed if resume else None, parallel=env.parallel,
            ).run()
        checks.raise_kept()
    finally:
        closing = [e.close() for e in engines.values()]
        if units is not None and units.router is not None:  # router.host: its SSH connection
            closing.append(units.router.close())
        await asyncio.gather(*closing, return_exceptions=True)
    return release.id


def _spec(target: object) -> ContainerTargetSpec:
    assert isinstance(target, ContainerTargetSpec)  # check_containers: an image runs on container targets only
    return target




async def open_engines(specs: Sequence[ContainerTargetSpec], loaded: LoadedConfig, *,
                       timeout: int) -> dict[str, OpenEngine]:
    """Every target's engine, or none: the first failure (after closing the others) says which is missing."""
    opened = await asyncio.gather(*(open_engine(s, root=loaded.root, timeout=timeout) for s in specs),
                                  return_exceptions=True)
    failed = [o for o in opened if isinstance(o, BaseException)]
    if failed:
        await asyncio.gather(*(o.close() for o in opened if isinstance(o, OpenEngine)), return_exceptions=True)
        raise failed[0]
    return {s.name: o for s, o in zip(specs, opened, strict=True) if isinstance(o, OpenEngine)}




async def shared_router(observer: Observer, env: Environment, specs: Mapping[str, Sequence[ServiceSpec]],
                        units: Mapping[str, Mapping[str, ServiceUnits]], *, root: Path) -> SharedGroups | None:
    """The environment's router, told which containers serve each group now; the groups made to match.

    ``root``: slipway.yml's directory (``router.host``'s key paths). Close its router when done.
    """
    if env.router is None:
        return None
    from slipway.clock import SystemClock
    from slipway.services.traffic import ensure_upstream, nginx_router

    router = nginx_router(env.router, root=root, clock=SystemClock())
    shared = SharedGroups(router, close=router.close)
    groups: set[str] = set()
    for name, found in units.items():
        for spec in specs[name]:
            if spec.group is None:
                continue
            groups.add(spec.group)
            running = found[spec.name].current
            shared.adopt(spec.group, name, [running.backend] if running and running.backend else [])
    for group in sorted(groups):
        # A missing include file is written first (a placeholder when nothing runs): nginx may not run yet.
        await ensure_upstream(router, group, [b for owned in shared.owned[group].values() for b in owned], observer)
        if await shared.sync(group):
            observer.message(f"router: upstream {group} set to the running containers")
    return shared




@dataclass
class ContainerUnits:
    """The container targets of one environment as units of the rollout (:class:`~slipway.engine.units.Units`)."""

    store: DeploymentStore
    observer: Observer
    steps: StepRunner
    environment: str
    env: Environment
    targets: Mapping[str, ContainerTarget]
    specs: Mapping[str, Sequence[ServiceSpec]]
    release: ReleaseInfo
    repository: str
    run_id: int | None
    #: slipway.yml's directory (``router.host``'s key paths).
    root: Path = field(default_factory=Path.cwd)
    deployment_id: int = 0
    ledger: Ledger = field(default_factory=Ledger)
    #: Set by :meth:`prepare`, under the environment's lock.
    router: SharedGroups | None = None

    @property
    def release_id(self) -> str:
        """The release deployed."""
        return self.release.id

    @property
    def names(self) -> Sequence[str]:
        """The container targets, in slipway.yml's order."""
        return list(self.targets)

    async def prepare(self, resumed: Resumed | None) -> None:
        """Before anything switches: each target's current containers (the digest the store records wins),
        the router made to route to exactly those, then every orphan stopped and removed, as a step."""
        known = {h.host: h for h in self.store.host_releases(self.environment)}
        self.ledger.before.update({name: known.get(name) for name in self.targets})
        self.ledger.previous.update({n: (b.release_id if b else None) for n, b in self.ledger.before.items()})
        back_to_last_good(self.store, self.ledger, known, environment=self.environment, deployment_id=self.deployment_id)
        units: dict[str, dict[str, ServiceUnits]] = {}
        for name, target in self.targets.items():
            before = known.get(name)
            digest = before.artifact_digest if before else None
            units[name] = {s.name: await target.units(s.name, recorded=digest) for s in self.specs[name]}
        self.router = await shared_router(self.observer, self.env, self.specs, units, root=self.root)
        for name, found in units.items():
            orphans = [(spec, unit) for spec in self.specs[name] for unit in found[spec.name].orphans]
            if orphans:
                await self._remove_orphans(name, orphans)

    async def _remove_orphans(self, name: str, orphans: Sequence[tuple[ServiceSpec, RunningService]]) -> None:
        """Stop and remove containers left running by an interrupted deployment (they serve no traffic)."""
        target = self.targets[name]

        async def action() -> tuple[None, str]:
            for spec, unit in orphans:
                await target.retire(unit, stop_timeout=spec.stop_timeout)
            listed = ", ".join(f"{unit.name} ({unit.ref.short})" for _, unit in orphans)
            return None, f"removed {len(orphans)} orphan container(s), left running by an interrupted deployment: {listed}"

        await recorded(self.steps, name, "remove orphan containers", action)

    async def deploy(self, name: str) -> HostOutcome | None:
        """Deploy the image to one target; the failure as an outcome (the target is left as it was)."""
        started = time.monotonic()
        release = self.release
        try:
            await self._switch(name, release.digest, label=f"deploy {release.id}")
        except RetireFailed as exc:
            # The target serves the new containers: the store says so; the breaker decides whether it goes back.
            self._switched(name)
            return HostOutcome(name, False, step="stop the old containers", error=str(exc),
                               release=release.id, duration=time.monotonic() - started)
        except SlipwayError as exc:
            if is_check_failure(exc):
                self.ledger.failed_checks.add(name)
            return HostOutcome(name, False, step="deploy", error=str(exc), duration=time.monotonic() - started)
        self._switched(name)
        self.ledger.outcomes[name] = HostOutcome(name, True, release=release.id, duration=time.monotonic() - started)
        return None

    def _switched(self, name: str) -> None:
        self.ledger.switched.append(name)
        self.store.set_host_release(
            environment=self.environment, host=name, release_id=self.release.id, artifact_digest=self.release.digest,
            commit=self.release.commit, deployment_id=self.deployment_id, run_id=self.run_id,
        )

    async def verify(self, name: str) -> None:
        """Every service's readiness checks on the target once more (a canary bake)."""
        for spec in self.specs[name]:
            await self.targets[name].verify(spec)

    async def revert(self, name: str) -> str:
        """Deploy the image the target ran before this deployment, the same way; the store hears right after."""
        before = self.ledger.before.get(name)
        previous = self.ledger.previous[name]
        if before is None or before.release_id != previous:
            raise DeploymentError(f"[{name}] the image of release {previous} is not recorded: it cannot be pulled")
        note = f"reverted to {before.release_id}"
        try:
            await self._switch(name, before.artifact_digest, label=f"revert to {before.release_id}")
        except RetireFailed as exc:  # switched back; old containers of this release may still run
            note += f", but {exc.message.removeprefix(f'[{name}] ')}"
        self.store.set_host_release(
            environment=self.environment, host=name, release_id=before.release_id,
            artifact_digest=before.artifact_digest, commit=before.commit,
            deployment_id=before.deployment_id, run_id=before.run_id,
        )
        return note

    async def _switch(self, name: str, digest: str, *, label: str) -> None:
        """deploy_services on one target as a recorded step: every service to ``repository@digest``."""
        target, specs = self.targets[name], self.specs[name]
        ref = ImageRef(self.repository, digest)
        view = self.router.view(name) if self.router is not None else None

        async def action() -> tuple[None, str]:
            done = await deploy_services(target, specs, {s.name: ref for s in specs}, router=view)
            same = f" ({', '.join(done.unchanged)} already ran it)" if done.unchanged else ""
            return None, f"{', '.join(s.name for s in specs)} -> {ref.reference}{same}"

        await recorded(self.steps, name, label, action)

    async def finish(self, rollout: RolloutControl) -> None:
        """Nothing to clean up: the old containers stopped as each target switched."""

    def explain(self, error: DeploymentError) -> DeploymentError:
        """A failure of container targets needs no other words."""
        return error


def describe_rollout(loaded: LoadedConfig, environment: str) -> list[str]:
    """The batches and each target's services, in deploy order, for ``slipway run --dry-run``."""
    from slipway.targets.container import deploy_order

    project = loaded.project
    env = project.environments[environment]
    targets = [_spec(t) for t in env.targets]
    lines = [f"  strategy: {env.strategy.kind.value if env.strategy is not None else 'all_at_once'}",
             "  first, on every target: stop and remove orphan containers (running, but not the recorded release)"]
    for batch in plan_rollout([t.name for t in targets], env):
        lines.append(f"  batch {batch.index + 1} ({batch.kind.value}): {', '.join(batch.hosts)}")
    for target in targets:
        names = target.services or tuple(project.services)
        order = deploy_order([ServiceSpec(name=n, depends_on=project.services[n].depends_on) for n in names])
        lines.append(f"  {target.name} ({target.engine}): pull <registry>/{image_artifact(project).name}@<digest>, "
                     f"start {' -> '.join(s.name for s in order)}, wait until ready, switch, stop the old containers")
    return lines
