"""Deploying an image to an environment's container targets: strategy, router, breaker, records.

The same rules as release directories on hosts (docs/strategies.md), with a container target (one
engine) as the "host":

* the environment's strategy splits the targets into batches (:func:`slipway.engine.planner.plan_rollout`,
  pure); a batch's targets are deployed together, at most ``parallel`` at a time;
* on each target :func:`~slipway.targets.container.deploy_services` pulls the digest, starts the new
  containers in dependency order, waits for their readiness checks, adds them to the router and drains
  the old ones, then stops the old ones; a target that fails is left as it was (all or nothing);
* a failed target counts against the deployment circuit breaker. Below the threshold the rollout goes
  on and the deployment ends failed; at the threshold every target this deployment switched goes back to
  the image it ran before (or, with ``auto_rollback: false`` / ``on_failure: halt``, stays as it is);
* the store hears which digest runs on which target right after each target switched, and again after a
  revert, so ``slipway status`` tells the truth whatever happens next.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from slipway.artifacts.image import ImageRef
from slipway.config import LoadedConfig
from slipway.engine.planner import ReleaseInfo, plan_rollout
from slipway.engine.rollout import FIRST_FAILURE
from slipway.engine.steps import StepRunner
from slipway.engine.strategy import Batch, failure_threshold
from slipway.errors import (
    CheckFailed,
    DeploymentError,
    DeploymentHalted,
    HostOutcome,
    RetireFailed,
    SlipwayError,
    of_hosts,
)
from slipway.model.config import Environment
from slipway.model.containers import ContainerTargetSpec
from slipway.model.records import HostRelease
from slipway.model.states import DeploymentKind, State
from slipway.routers.nginx import NginxRouter
from slipway.routers.shared import SharedGroups
from slipway.services import recovery
from slipway.services.app import App
from slipway.services.checks import deployment_checks
from slipway.services.containers import image_artifact, image_ref, recorded, registry_of, service_specs
from slipway.services.deployments import LOCK_TTL, DeployRequest, new_release_id
from slipway.services.secrets import resolve_secrets
from slipway.targets.container import ContainerTarget, RunningService, ServiceSpec, ServiceUnits, deploy_services
from slipway.targets.engines import OpenEngine, open_engine


async def deploy_containers(app: App, loaded: LoadedConfig, request: DeployRequest) -> str:
    """Deploy (or roll back to) an image digest on every container target of an environment."""
    project = loaded.project
    env = project.environments[request.environment]
    secrets = resolve_secrets(env, environment=request.environment, root=loaded.root, environ=app.environ)
    app.masker.add(secrets.values())
    registry = registry_of(app, loaded)
    ref = image_ref(loaded, request.digest)
    record = app.store.get_artifact(request.digest)
    commit = request.commit or (record.commit if record else "unknown")
    release = ReleaseInfo(request.release_id or new_release_id(request.digest, time.time()), request.digest, commit)
    rollback = request.kind is DeploymentKind.ROLLBACK
    checks = deployment_checks(app, loaded, environment=request.environment, release=release, hosts=[],
                               stage_id=request.stage_id, secrets=secrets, rollback=rollback)
    specs = {t.name: service_specs(loaded, request.environment, _spec(t), secrets, release) for t in env.targets}
    await checks.before()  # an open dependency breaker fails fast, before any engine is touched
    engines = await open_engines([_spec(t) for t in env.targets], loaded, timeout=image_artifact(project).timeout)
    try:
        targets = {
            name: ContainerTarget(opened.engine, app=project.name, environment=request.environment,
                                  credentials=registry.credentials, instance=name)
            for name, opened in engines.items()
        }
        rollout = ContainerRollout(
            app=app, environment=request.environment, env=env, targets=targets, specs=specs,
            release=release, repository=ref.repository, run_id=request.run_id, rollback=rollback,
            steps=StepRunner(store=app.store, stage_id=request.stage_id, observer=app.observer, masker=app.masker),
            verify_environment=checks.verify_environment if checks.has_environment_checks else None,
            halt_on_failed_check=checks.halt,
        )
        await _locked(app, request, rollout)
        checks.raise_kept()
    finally:
        await asyncio.gather(*(e.close() for e in engines.values()), return_exceptions=True)
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


async def shared_router(app: App, env: Environment, specs: Mapping[str, Sequence[ServiceSpec]],
                        units: Mapping[str, Mapping[str, ServiceUnits]]) -> SharedGroups | None:
    """The environment's router, told which containers serve each group now; the groups made to match."""
    if env.router is None:
        return None
    from slipway.clock import SystemClock

    shared = SharedGroups(NginxRouter.from_config(env.router, clock=SystemClock()))
    groups: set[str] = set()
    for name, found in units.items():
        for spec in specs[name]:
            if spec.group is None:
                continue
            groups.add(spec.group)
            running = found[spec.name].current
            shared.adopt(spec.group, name, [running.backend] if running and running.backend else [])
    for group in sorted(groups):
        if await shared.sync(group):
            app.observer.message(f"router: upstream {group} set to the running containers")
    return shared


async def _locked(app: App, request: DeployRequest, rollout: ContainerRollout) -> None:
    """Run the rollout under the environment's lock, recorded as a deployment."""
    store = app.store
    lock = f"environment {request.environment}"
    holder = recovery.holder_text(app.settings.actor, run_id=request.run_id)
    store.acquire_lock(lock, holder, ttl=LOCK_TTL, is_dead=recovery.holder_is_dead)
    try:
        env = rollout.env
        rollout.deployment_id = store.start_deployment(
            environment=request.environment, kind=request.kind, run_id=request.run_id,
            artifact_digest=request.digest, release_id=rollout.release.id, deployed_by=app.settings.actor,
            reason=request.reason, strategy=env.strategy.kind.value if env.strategy is not None else "all_at_once",
        )
        await rollout.run()
    finally:
        store.release_lock(lock, holder)


@dataclass
class ContainerRollout:
    """One deployment of an image to the container targets of one environment."""

    app: App
    environment: str
    env: Environment
    targets: Mapping[str, ContainerTarget]
    specs: Mapping[str, Sequence[ServiceSpec]]
    release: ReleaseInfo
    repository: str
    run_id: int | None
    rollback: bool
    steps: StepRunner
    #: Set by :meth:`prepare`, under the environment's lock.
    router: SharedGroups | None = None
    verify_environment: Callable[[], Awaitable[None]] | None = None
    halt_on_failed_check: bool = False
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    deployment_id: int = 0
    before: dict[str, HostRelease | None] = field(default_factory=dict)
    switched: list[str] = field(default_factory=list)
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    failed: dict[str, HostOutcome] = field(default_factory=dict)
    failed_checks: set[str] = field(default_factory=set)

    async def run(self) -> None:
        """Execute, then record the outcome truthfully whatever happened; re-raise failures."""
        store = self.app.store
        try:
            await self.execute()
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.record(State.CANCELLED)
            store.finish_deployment(self.deployment_id, State.CANCELLED, reason="interrupted by the user")
            raise
        except SlipwayError as exc:
            self.record(State.FAILED)
            store.finish_deployment(self.deployment_id, State.FAILED, reason=exc.message.splitlines()[0])
            if isinstance(exc, DeploymentError) and self.run_id and not exc.hint:
                exc.hint = f"'slipway logs {self.run_id}' shows every step's output"
            raise
        self.record(State.SUCCEEDED)
        store.finish_deployment(self.deployment_id, State.SUCCEEDED)

    async def execute(self) -> None:
        """Every batch, the breaker after each, the environment's checks at the end."""
        known = {h.host: h for h in self.app.store.host_releases(self.environment)}
        self.before = {name: known.get(name) for name in self.targets}
        await self.prepare()
        threshold = failure_threshold(self.env.circuit_breaker or FIRST_FAILURE, len(self.targets))
        batches = plan_rollout(list(self.targets), self.env, rollback=self.rollback)
        for batch in batches:
            self.app.observer.message(
                f"batch {batch.index + 1} of {len(batches)} ({batch.kind.value}): {', '.join(batch.hosts)}")
            failures = await self._batch(batch.hosts)
            if batch.bake_time:
                failures.update(await self._bake(batch, exclude=set(failures)))
            if failures:
                await self._count(failures, threshold)
            if batch.pause_after:
                await self.sleep(batch.pause_after)
        if self.verify_environment is not None:
            await self._verify_environment()
        if self.failed:
            stuck = self._stuck(list(self.failed))
            back = [n for n in self.failed if n not in stuck]
            raise DeploymentError(
                f"deployment of {self.environment} failed on {len(self.failed)} of {len(self.targets)} hosts, "
                f"below the circuit breaker threshold ({threshold}): "
                + (f"{', '.join(back)} run the image each ran before; " if back else "")
                + f"the other hosts run {self.release.id}",
                results=self.outcomes,
            )

    async def prepare(self) -> None:
        """Before anything switches: each target's current containers (the digest the store records wins),
        the router made to route to exactly those, then every orphan stopped and removed, as a step."""
        units: dict[str, dict[str, ServiceUnits]] = {}
        for name, target in self.targets.items():
            before = self.before.get(name)
            recorded = before.artifact_digest if before else None
            units[name] = {s.name: await target.units(s.name, recorded=recorded) for s in self.specs[name]}
        self.router = await shared_router(self.app, self.env, self.specs, units)
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

    async def _batch(self, names: Sequence[str]) -> dict[str, HostOutcome]:
        limit = asyncio.Semaphore(self.env.parallel)

        async def one(name: str) -> HostOutcome | None:
            async with limit:
                return await self._deploy_one(name)

        results = await asyncio.gather(*(one(n) for n in names))
        return {r.host: r for r in results if r is not None}

    async def _deploy_one(self, name: str) -> HostOutcome | None:
        """Deploy the image to one target; the failure as an outcome (the target is left as it was)."""
        started = time.monotonic()
        try:
            await self._switch(name, self.release.digest, label=f"deploy {self.release.id}")
        except RetireFailed as exc:
            # The target serves the new containers: the store says so; the breaker decides whether it goes back.
            self._switched(name)
            return HostOutcome(name, False, step="stop the old containers", error=str(exc),
                               release=self.release.id, duration=time.monotonic() - started)
        except SlipwayError as exc:
            if isinstance(exc, CheckFailed) or isinstance(exc.__cause__, CheckFailed):
                self.failed_checks.add(name)
            return HostOutcome(name, False, step="deploy", error=str(exc), duration=time.monotonic() - started)
        self._switched(name)
        self.outcomes[name] = HostOutcome(name, True, release=self.release.id, duration=time.monotonic() - started)
        return None

    def _switched(self, name: str) -> None:
        self.switched.append(name)
        self._set_host_release(name, self.release.id, self.release.digest, self.release.commit, None)

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

    def _set_host_release(self, name: str, release_id: str, digest: str, commit: str,
                          before: HostRelease | None) -> None:
        self.app.store.set_host_release(
            environment=self.environment, host=name, release_id=release_id, artifact_digest=digest, commit=commit,
            deployment_id=before.deployment_id if before else self.deployment_id,
            run_id=before.run_id if before else self.run_id,
        )

    async def _bake(self, batch: Batch, *, exclude: set[str]) -> dict[str, HostOutcome]:
        """A canary batch runs under its readiness checks for ``bake_time``; the targets that fail them."""
        rounds = max(1, math.ceil(batch.bake_time / batch.check_interval)) if batch.check_interval else 1
        failures: dict[str, HostOutcome] = {}
        for n in range(rounds):
            await self.sleep(batch.bake_time / rounds)
            for name in [h for h in batch.hosts if h not in exclude and h not in failures]:
                try:
                    for spec in self.specs[name]:
                        await self.targets[name].verify(spec)
                except SlipwayError as exc:
                    self.failed_checks.add(name)
                    failures[name] = HostOutcome(name, False, step="canary checks", error=str(exc))
            self.app.observer.message(f"canary bake {n + 1}/{rounds}: {len(batch.hosts) - len(failures)} healthy")
        return failures

    async def _count(self, failures: dict[str, HostOutcome], threshold: int) -> None:
        """Count failed targets against the breaker: trip, or put just these back and go on."""
        self.failed.update(failures)
        self.outcomes.update(failures)
        count, total = len(self.failed), len(self.targets)
        if count < threshold:
            self.app.observer.message(
                f"{len(failures)} {'host' if len(failures) == 1 else 'hosts'} failed ({count} of {total}, "
                f"breaker threshold {threshold}): "
                f"{', '.join(failures)} go back to the image each ran; going on")
            await self._revert([n for n in failures if n in self.switched])
            return
        if self.env.circuit_breaker is None:
            message = f"deployment of {self.environment} failed on {of_hosts(count, total)}"
        else:
            message = (f"deployment of {self.environment} failed: circuit breaker tripped: {count} of {total} "
                       f"hosts failed (threshold {threshold})")
        self.app.observer.message(message)
        if self._halts():
            raise self._halted(message)
        switched = list(self.switched)
        await self._revert(switched)
        stuck = self._stuck(switched)
        if switched and not stuck:
            message += "; the hosts already switched were reverted"
        elif stuck:
            message += f"; {', '.join(stuck)} could not be reverted and stay on {self.release.id}"
        raise DeploymentError(message, results=self.outcomes)

    def _stuck(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that failed and are still on this release (their revert failed)."""
        return [n for n in names if (o := self.outcomes.get(n)) is not None and not o.ok
                and o.release == self.release.id]

    def _halts(self) -> bool:
        breaker = self.env.circuit_breaker
        only_checks = set(self.failed) <= self.failed_checks
        return (breaker is not None and not breaker.auto_rollback) or (self.halt_on_failed_check and only_checks)

    def _halted(self, message: str) -> DeploymentHalted:
        earlier = sorted({b.release_id for n in self.switched if (b := self.before.get(n)) is not None})
        back = (f"go back with 'slipway rollback {self.environment} --to {earlier[0]} --reason TEXT'" if earlier
                else "there is no earlier release to go back to")
        return DeploymentHalted(
            f"{message}; halted: {', '.join(self.switched) or 'no host'} left on release {self.release.id} as it is",
            results=self.outcomes, hint=f"a person decides now: {back}, or fix the release and deploy it again",
        )

    async def _revert(self, names: Sequence[str]) -> None:
        """Put each of ``names`` back on the image it ran before this deployment, one at a time."""
        for name in reversed(names):
            self.switched.remove(name)
            before = self.before.get(name)
            old = self.outcomes.get(name) or HostOutcome(name, False)
            if before is None or before.artifact_digest == self.release.digest:
                self.outcomes[name] = _noted(old, "nothing ran there before: left on this release")
                continue
            note = f"reverted to {before.release_id}"
            try:
                await self._switch(name, before.artifact_digest, label=f"revert to {before.release_id}")
            except RetireFailed as exc:  # switched back; old containers of this release may still run
                note += f", but {exc.message.removeprefix(f'[{name}] ')}"
            except SlipwayError as exc:
                self.outcomes[name] = _noted(old, f"revert failed, left on {self.release.id}: {exc}",
                                             release=self.release.id)
                continue
            self._set_host_release(name, before.release_id, before.artifact_digest, before.commit, before)
            self.outcomes[name] = _noted(old, note, release=before.release_id)

    async def _verify_environment(self) -> None:
        """The environment's smoke checks once every target is on; a failure reverts them all (or halts)."""
        assert self.verify_environment is not None
        try:
            await self.verify_environment()
        except CheckFailed as exc:
            summary = " ".join(str(exc).split())[:300]
            self.failed.update({n: HostOutcome(n, False, step="checks after the deployment", error=summary)
                                for n in self.targets})
            self.outcomes.update(self.failed)
            self.failed_checks.update(self.targets)
            message = f"deployment of {self.environment} failed its checks after every host was on"
            if self._halts():
                raise self._halted(message) from exc
            await self._revert(list(self.switched))
            raise DeploymentError(message, results=self.outcomes) from exc

    def record(self, state: State) -> None:
        """Write each target's outcome of this deployment to the store."""
        for name in self.targets:
            outcome = self.outcomes.get(name)
            ok = outcome.ok if outcome else state is State.SUCCEEDED
            before = self.before.get(name)
            self.app.store.record_host(
                self.deployment_id, host=name, from_release=before.release_id if before else None,
                to_release=self.release.id,
                state=State.SUCCEEDED if ok else (State.CANCELLED if state is State.CANCELLED else State.FAILED),
                error=None if ok or outcome is None else outcome.error,
                duration=outcome.duration if outcome else None,
            )


def _noted(old: HostOutcome, note: str, *, release: str | None = None) -> HostOutcome:
    error = (old.error + "; " if old.error else "") + note
    return HostOutcome(old.host, False, step=old.step or "reverted", error=error, release=release,
                       duration=old.duration)


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
