"""``slipway rollback ENV`` on a blue/green environment: switch the router back to the warm slot.

The warm slot still runs the release that served before the last switch, so going back is one router
switch: no install, no restart. The release asked for must be what the warm slot holds on every host
(checked in the store first, then on the hosts themselves). Each host's warm backend passes the
readiness gate before the switch; one that does not answer is restarted with its slot's activate hooks
first. Nothing changes for users until every host's warm backend is ready. After the switch the
environment's smoke checks and dependencies run, as after any rollback; if they fail, the switch back is
recorded as failed and traffic stays where it went (switching again would serve the release the
rollback was asked to leave).

A switch back is a deployment through the one rollout engine (:class:`SwitchBackUnits`): one batch of
every host's warm slot, the deployment recorded and finished by the engine's verdict like any other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from slipway.config import LoadedConfig
from slipway.engine.pause import Resumed
from slipway.engine.planner import ReleaseInfo
from slipway.engine.rollout import Rollout
from slipway.engine.slots import other_slot, warm_mismatches, warm_release
from slipway.engine.steps import StepRunner
from slipway.engine.units import Ledger, RolloutControl
from slipway.errors import CheckFailed, DeploymentError, GateError, HostOutcome, SlipwayError
from slipway.model.records import HostRelease
from slipway.model.states import State
from slipway.model.strategy import Batch, BatchKind
from slipway.ports import Target
from slipway.services.app import App
from slipway.services.bluegreen import (
    SlotGate,
    slot_gate,
    slot_hosts,
    slot_revert_steps,
    slot_targets,
    strategy_of,
)
from slipway.services.checks import DeploymentChecks, deployment_checks
from slipway.services.envlock import environment_lock
from slipway.services.releases import DeployRequest, RollbackTarget
from slipway.services.secrets import resolve_secrets
from slipway.targets import release as layout


def choose_rollback(app: App, environment: str, to_release: str | None) -> RollbackTarget:
    """The release the warm slot holds on every host (or ``to_release``, if it holds that); else GateError."""
    env = app.config.project.environments[environment]
    rows = app.store.slot_releases(environment)
    serving = {r.slot for r in rows if r.serving}
    if len(serving) != 1:
        raise GateError(f"no slot of {environment} serves yet: there is nothing to switch back from")
    warm = {r.host: r for r in rows if not r.serving}
    held = {t.name: (warm[t.name].release_id if t.name in warm else None) for t in env.targets}
    release = to_release or warm_release(held)
    slot = next(iter(serving))
    if release is None:
        raise GateError(
            f"the warm slot of {environment} holds no one release on every host: {_describe(held)}",
            hint=f"'slipway status' shows each slot; deploy the release you want with 'slipway promote ... --to {environment}'",
        )
    if {r.release_id for r in rows if r.serving} == {release}:
        raise GateError(f"release {release} already serves {environment} (slot {slot})")
    missing = warm_mismatches(held, release)
    if missing:
        raise GateError(
            f"the warm slot of {environment} does not hold {release}: {_describe(missing)}",
            hint=f"a switch back reaches only what the warm slot holds; promote that artifact to {environment} to "
            "deploy it into the idle slot",
        )
    succeeded = {d.release_id for d in app.store.deployments(environment, limit=200) if d.state is State.SUCCEEDED}
    if release not in succeeded:
        raise GateError(
            f"the warm slot of {environment} holds {release}, which never deployed successfully there",
            hint="it is what a failed deployment left in the idle slot; deploy a good release instead",
        )
    row = next(r for r in warm.values() if r.release_id == release)
    return RollbackTarget(release, row.artifact_digest, row.commit)


def _describe(held: dict[str, str | None]) -> str:
    return ", ".join(f"{host} holds {release or 'nothing'}" for host, release in held.items())


async def switch_back(app: App, loaded: LoadedConfig, request: DeployRequest) -> str:
    """Make the warm slot serve again, once each of its hosts is ready; record it as a rollback."""
    name = request.environment
    strategy = strategy_of(loaded.project.environments[name])
    assert strategy is not None and request.release_id is not None
    release = ReleaseInfo(request.release_id, request.digest, request.commit or "unknown")
    gate = slot_gate(loaded, name, release, observer=app.observer)
    try:
        await gate.load()
        if gate.active is None:
            raise GateError(f"the router serves no slot of {name}: there is nothing to switch back from")
        warm = other_slot(strategy.slots, gate.active)
        env = loaded.project.environments[name]
        secrets = resolve_secrets(env, environment=name, root=loaded.root, environ=app.environ)
        app.masker.add(secrets.values())
        checks = deployment_checks(
            app, loaded, environment=name, release=release, hosts=slot_hosts(loaded, name, warm),
            stage_id=request.stage_id, secrets=secrets, rollback=True,
        )
        with environment_lock(app, name, run_id=request.run_id):
            targets = slot_targets(app, loaded, name, warm)
            try:
                held = dict(zip(targets, await asyncio.gather(*(layout.current_release(t) for t in targets.values())), strict=True))
                missing = warm_mismatches(held, release.id)
                if missing:
                    raise GateError(f"the warm slot {warm} of {name} does not hold {release.id}: {_describe(missing)}")
                await _switch(app, loaded, request, gate, warm, targets, release, checks)
            finally:
                await asyncio.gather(*(t.close() for t in targets.values()), return_exceptions=True)
        return release.id
    finally:
        await gate.close()


@dataclasses.dataclass
class SwitchBackUnits:
    """A switch back as the rollout (:mod:`slipway.engine.rollout`) drives it: each unit is one host's warm
    slot. Deploying a unit makes its warm backend ready (restarted if it does not answer); nothing serves
    it yet, so there is nothing to revert. Only :meth:`finish` touches traffic: the router switch, then
    the environment's smoke checks. The store records each host's move from the release it served."""

    app: App
    loaded: LoadedConfig
    request: DeployRequest
    gate: SlotGate
    warm: str
    targets: dict[str, Target]
    release: ReleaseInfo
    checks: DeploymentChecks
    steps: StepRunner
    ledger: Ledger = dataclasses.field(default_factory=Ledger)

    @property
    def environment(self) -> str:
        """The environment switched back."""
        return self.request.environment

    @property
    def release_id(self) -> str:
        """The release the warm slot holds."""
        return self.release.id

    @property
    def names(self) -> list[str]:
        """Every host of the environment."""
        return list(self.targets)

    async def prepare(self, resumed: Resumed | None) -> None:
        """What each host serves now (the other slot's release): the store's record of it."""
        served = {r.host: r.release_id for r in self.app.store.host_releases(self.environment)}
        self.ledger.served = {h: served.get(h) for h in self.targets}
        self.ledger.previous.update({h: self.release.id for h in self.targets})

    async def deploy(self, name: str) -> HostOutcome | None:
        """The host's warm backend, ready to serve; the failure as an outcome (traffic is not moved yet)."""
        outcome = await _warm_up(self.loaded, self.environment, self.gate, self.warm, self.targets[name],
                                 self.release, self.steps)
        return None if outcome.ok else outcome

    async def verify(self, name: str) -> None:
        """Ready once more."""
        await self.gate.readiness[self.warm].ready(name)

    async def revert(self, name: str) -> str:
        """Nothing to put back: a warm slot serves nobody until :meth:`finish` switches to it."""
        return "left as it was"

    async def finish(self, rollout: RolloutControl) -> None:
        """Every warm backend is ready: the router switches back to them, then the smoke checks run."""
        app, name = self.app, self.environment
        app.observer.message(f"blue/green: slot {self.warm} is ready on every host; switching traffic back to it")
        await self.gate.switch_to(self.warm)
        app.store.set_serving_slot(name, self.warm, actor=app.settings.actor)
        if self.checks.has_environment_checks:
            try:
                await self.checks.verify_environment()
            except CheckFailed as exc:  # traffic stays: switching again would serve what the rollback left
                raise CheckFailed(
                    f"smoke checks failed after switching back to slot {self.warm}, which now serves: {exc}",
                    hint=exc.hint,
                ) from exc

    def explain(self, error: DeploymentError) -> DeploymentError:
        """A switch back that failed before the router switch left traffic where it was."""
        bad = [h for h, o in self.ledger.outcomes.items() if not o.ok]
        return DeploymentError(
            f"switch back of {self.environment} to slot {self.warm} refused: {', '.join(bad) or 'a host'} not "
            f"ready; traffic stayed on {self.gate.active}",
            results=self.ledger.outcomes,
        )


async def _switch(
    app: App,
    loaded: LoadedConfig,
    request: DeployRequest,
    gate: SlotGate,
    warm: str,
    targets: dict[str, Target],
    release: ReleaseInfo,
    checks: DeploymentChecks,
) -> None:
    """The switch back, recorded as a rollback deployment: one batch of every host, then the router."""
    name, store = request.environment, app.store
    deployment_id = store.start_deployment(
        environment=name, kind=request.kind, run_id=request.run_id, artifact_digest=release.digest,
        release_id=release.id, deployed_by=app.settings.actor, reason=request.reason, strategy="blue_green",
    )
    steps = StepRunner(store=store, stage_id=request.stage_id, observer=app.observer, masker=app.masker)
    units = SwitchBackUnits(app, loaded, request, gate, warm, targets, release, checks, steps)
    started = time.monotonic()
    everyone = (Batch(index=0, kind=BatchKind.ALL, hosts=tuple(targets)),)  # the router switches all at once
    await Rollout(
        units=units, log=store, deployment_id=deployment_id, run_id=request.run_id, observer=app.observer,
        batches=everyone, parallel=len(targets) or 1,
    ).run()
    app.observer.message(f"{name} serves {release.id} again (slot {warm}) after {time.monotonic() - started:.1f}s")


async def _warm_up(
    loaded: LoadedConfig, name: str, gate: SlotGate, warm: str, target: Target, release: ReleaseInfo, steps: StepRunner
) -> HostOutcome:
    """The warm backend of one host: ready as it is, or restarted with its activate hooks and then ready."""
    ready = gate.readiness[warm]
    started = time.monotonic()
    quick = dataclasses.replace(
        ready, readiness=ready.readiness.model_copy(update={"successes": 1, "deadline": ready.readiness.timeout})
    )
    try:
        try:
            await quick.ready(target.name)
        except CheckFailed:
            steps.observer.message(f"[{target.name}] slot {warm} does not answer: restarting it")
            before = HostRelease(name, target.name, release.id, release.digest, release.commit, 0.0, 0, None)
            for step in slot_revert_steps(loaded, name, warm, target.name, before):
                await steps.run_command(
                    target, f"restart {step.label}", step.command,
                    cwd=layout.release_dir(target, release.id), timeout=step.timeout,
                )
        await ready.ready(target.name)
    except SlipwayError as exc:
        return HostOutcome(target.name, False, step="readiness", error=str(exc), duration=time.monotonic() - started)
    return HostOutcome(target.name, True, release=release.id, duration=time.monotonic() - started)
