"""Release directories on hosts, the first kind of unit (:class:`~slipway.engine.units.Units`).

:class:`DeploymentRun` executes a :class:`~slipway.engine.planner.DeploymentPlan` through Target ports:
the phases before the switch on every host (:meth:`prepare`), then, batch by batch as the rollout
(:mod:`slipway.engine.rollout`) asks, one host at a time: switch ``current``, its activate and verify
hooks and checks (:meth:`deploy`); putting a host back (:meth:`revert`); pruning old releases at the end.

Guarantees, whatever fails:

- before the switch nothing a user sees changes; a failure there leaves every host as it was;
- ``current`` only ever points at a complete release (see :mod:`slipway.targets.release`);
- the store is told which release a host runs right after its ``current`` moves, and again when it moves
  back, so it always says truthfully what runs where;
- when a host fails after switching, every host this deployment switched is put back on the release it
  had (its activate hooks run again to restart it), and the deployment is recorded as failed with the
  per-host evidence.

This kind lives in the engine because it is written against ports only (``ports.Target``, the store
ports) and the release layout (:mod:`slipway.targets.release`, itself written against ``ports.Target``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from slipway.artifacts.archive import Manifest
from slipway.engine.history import back_to_last_good
from slipway.engine.pause import Resumed
from slipway.engine.planner import POST_SWITCH, PRE_SWITCH, Action, DeploymentPlan, PlanStep, ReleaseInfo
from slipway.engine.rollout import Rollout, TrafficGate
from slipway.engine.steps import StepRunner
from slipway.engine.strategy import Batch, BatchKind, CircuitBreakerPolicy
from slipway.engine.units import Ledger, RolloutControl
from slipway.engine.verdict import store_gone
from slipway.errors import (
    AuthenticationFailed,
    CheckFailed,
    DeploymentError,
    GateError,
    HostKeyError,
    HostOutcome,
    HostsUnreachable,
    HostUnreachable,
    SlipwayError,
    of_hosts,
)
from slipway.model.records import HostRelease
from slipway.ports import DeploymentStore, Target
from slipway.targets import release as layout

#: Builds the steps that restart ``host`` on the release it ran before (activate hooks of that release).
RevertSteps = Callable[[str, HostRelease], Sequence[PlanStep]]
#: Errors that mean "this host could not be reached or would not let us in", not "the release is bad".
CONNECT_FAULTS = (HostUnreachable, AuthenticationFailed, HostKeyError)
ObjectSource = Callable[[set[str]], Awaitable[dict[str, bytes]]]
#: Restarts a host's services on a release ``current`` points at and waits until they are ready; returns
#: what it did, raises a SlipwayError with the service's last log lines when one does not start.
RestartServices = Callable[[Target, ReleaseInfo], Awaitable[str]]


@dataclass
class DeploymentRun:
    """One deployment of release directories to the hosts of one environment (the units are the hosts)."""

    plan: DeploymentPlan
    targets: Mapping[str, Target]
    steps: StepRunner
    store: DeploymentStore
    deployment_id: int
    run_id: int | None
    manifest: Manifest | None
    source: ObjectSource | None
    shared: Sequence[str]
    keep_releases: int
    revert_steps: RevertSteps
    parallel: int = 10
    #: Runs once for the environment after install and before the migrate hooks: the database migrations.
    before_migrate: Callable[[], Awaitable[None]] | None = None
    #: Checks one host after its verify hooks (the deployment test); raises CheckFailed. None: no checks.
    verify_host: Callable[[Target], Awaitable[None]] | None = None
    #: Checks the environment once every batch is on (smoke checks, dependencies); raises CheckFailed.
    verify_environment: Callable[[], Awaitable[None]] | None = None
    #: ``on_failure: halt``: a failed check leaves every host as it is for a person, instead of reverting.
    halt_on_failed_check: bool = False
    #: Restarts the host's services (``deploy.services``) after the switch; None: the project has none.
    restart_services: RestartServices | None = None
    #: The deployment circuit breaker; None: the first failed host stops the deployment (threshold 1).
    breaker: CircuitBreakerPolicy | None = None
    #: The router in front of the hosts with the readiness gate; None: no traffic switching.
    traffic: TrafficGate | None = None
    #: Waits between batches and while a canary bakes (injected: tests do not sleep).
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: A deployment parked after its canary and picked up again (approved or rejected).
    resumed: Resumed | None = None
    ledger: Ledger = field(default_factory=Ledger)
    _objects: layout.ObjectCache | None = None
    #: What each host's first look found (layout.look_before_install), used once by its install step.
    _looks: dict[str, layout.HostLook] = field(default_factory=dict)

    @property
    def environment(self) -> str:
        """The environment deployed to."""
        return self.plan.environment

    @property
    def release_id(self) -> str:
        """The release deployed."""
        return self.plan.release.id

    @property
    def names(self) -> Sequence[str]:
        """The hosts, in the plan's order."""
        return self.plan.hosts

    def rollout(self) -> Rollout:
        """The rollout that drives this deployment's hosts, batch by batch, and records how it ended."""
        batches = self.plan.rollout or tuple(
            Batch(index=i, kind=BatchKind.ALL, hosts=hosts) for i, hosts in enumerate(self.plan.batches)
        )
        return Rollout(
            units=self, log=self.store, deployment_id=self.deployment_id, run_id=self.run_id,
            observer=self.steps.observer, batches=batches, breaker=self.breaker, traffic=self.traffic,
            verify_environment=self.verify_environment, halt_on_failed_check=self.halt_on_failed_check,
            resumed=self.resumed, parallel=self.parallel, sleep=self.sleep,
        )

    async def prepare(self, resumed: Resumed | None) -> None:
        """What every host runs now; then, for a new deployment, the phases before the switch on every host."""
        known = {h.host: h for h in self.store.host_releases(self.plan.environment)}
        self.ledger.before.update({h: known.get(h) for h in self.plan.hosts})
        if self.plan.rollback:
            await self._look_before_rollback()
            return
        if resumed is None and self.manifest is not None:
            # One round trip per host: the layout, what runs there, and what this release lacks there.
            manifest = self.manifest
            seen = await self._each(
                self.plan.hosts,
                lambda t: layout.look_before_install(
                    t, manifest, self.release_id, shared=self.shared, timeout=self._install_timeout(t.name)
                ),
            )
            self._looks = {h: cast(layout.HostLook, v) for h, v in seen.items()}
            self.ledger.previous.update({h: look.current for h, look in self._looks.items()})
        else:
            currents = await self._each(self.plan.hosts, lambda t: layout.current_release(t))
            self.ledger.previous.update({h: (str(r) if r else None) for h, r in currents.items()})
        back_to_last_good(self.store, self.ledger, known, environment=self.environment, deployment_id=self.deployment_id)
        if resumed is not None:  # the phases before the switch ran before the deployment parked
            return
        for phase in PRE_SWITCH:
            if phase == "migrate" and self.before_migrate is not None:
                await self.before_migrate()  # once, not per host; a failure here switched nothing
            await self._phase(self.plan.hosts, phase)

    async def deploy(self, name: str) -> HostOutcome | None:
        """Switch one host's ``current``, run its activate and verify hooks, then its verify checks."""
        target = self.targets[name]
        for phase in POST_SWITCH:
            for step in self.plan.phase_steps(name, phase):
                started = time.monotonic()
                try:
                    await self._step(target, step)
                except SlipwayError as exc:
                    gone = store_gone(self.store, self.plan.environment)
                    if gone is not None:  # not this release's fault: the whole deployment stops and goes back
                        raise gone from exc
                    return HostOutcome(name, False, step=step.label, error=str(exc), duration=time.monotonic() - started)
        if self.verify_host is not None:
            started = time.monotonic()
            try:
                await self.verify_host(target)
            except SlipwayError as exc:
                if isinstance(exc, CheckFailed):
                    self.ledger.failed_checks.add(name)
                return HostOutcome(name, False, step="verify checks", error=str(exc), duration=time.monotonic() - started)
        return None

    async def verify(self, name: str) -> None:
        """The host's verify checks again (a canary bake)."""
        if self.verify_host is not None:
            await self.verify_host(self.targets[name])

    async def finish(self, rollout: RolloutControl) -> None:
        """Prune old releases (keeping this one and the one each host ran before); a failure only warns."""
        if self.plan.rollback:
            return
        try:
            await self._each(
                self.plan.hosts,
                lambda t: layout.prune_releases(
                    t, self.keep_releases, [r for r in (self.plan.release.id, self.ledger.previous.get(t.name)) if r]
                ),
                what="prune old releases",
            )
        except DeploymentError as exc:  # the new release runs everywhere: old ones left behind are no failure
            outcomes = self.ledger.outcomes
            for host in [h for h, o in outcomes.items() if not o.ok]:
                del outcomes[host]
            self.steps.observer.message(f"warning: {exc}")

    def explain(self, error: DeploymentError) -> DeploymentError:
        """A failure of release directories needs no other words."""
        return error

    def _install_timeout(self, host: str) -> float:
        """The timeout of the host's install step (the look is the install's first round trip)."""
        steps = [s for s in self.plan.phase_steps(host, "install") if s.action is Action.INSTALL]
        return steps[0].timeout if steps else 600.0

    async def _look_before_rollback(self) -> None:
        """One round trip per host: what runs there, and whether the release to go back to is still there.

        A host that no longer has it (pruned by keep_releases) refuses the whole rollback before any host
        is touched, on the connections the rollback then uses.
        """
        release = self.plan.release.id
        seen = await self._each(self.plan.hosts, lambda t: layout.inspect_releases(t, release))
        looks = {h: cast(layout.HostReleases, v) for h, v in seen.items()}
        self.ledger.previous.update({h: look.current for h, look in looks.items()})
        missing = [h for h, look in looks.items() if not look.has_release]
        if missing:
            for host in missing:
                self.ledger.outcomes[host] = HostOutcome(
                    host, False, step="connect", error=f"release {release} is not installed"
                )
            raise GateError(
                f"release {release} is no longer installed on {', '.join(missing)}: nothing was changed",
                hint="deploy.keep_releases limits how many releases a host keeps; promote that artifact again instead",
            )

    async def _each(
        self, hosts: Sequence[str], fn: Callable[[Target], Awaitable[object]], *, what: str = "connect"
    ) -> dict[str, object]:
        """Run ``fn`` on every host; if any fails, raise one DeploymentError holding every host's error."""
        limit = asyncio.Semaphore(self.parallel)

        async def one(host: str) -> object:
            async with limit:
                return await fn(self.targets[host])

        values = await asyncio.gather(*(one(h) for h in hosts), return_exceptions=True)
        failures = {
            h: HostOutcome(h, False, step=what, error=str(v))
            for h, v in zip(hosts, values, strict=True)
            if isinstance(v, SlipwayError)
        }
        for value in values:
            if isinstance(value, BaseException) and not isinstance(value, SlipwayError):
                raise value
        if failures:
            self.ledger.outcomes.update(failures)
            unreachable = all(isinstance(v, CONNECT_FAULTS) for v in values if isinstance(v, SlipwayError))
            if unreachable and what == "connect":  # nothing changed: the hosts are the problem, not the release
                raise HostsUnreachable(
                    f"deployment of {self.plan.environment} could not reach {of_hosts(len(failures), len(hosts))}; "
                    "nothing was changed on any host",
                    results=failures,
                    hint="see docs/ssh.md; once the hosts answer, run the deployment again",
                )
            raise DeploymentError(
                f"deployment of {self.plan.environment} failed on {of_hosts(len(failures), len(hosts))} "
                f"before anything changed ({what})",
                results=failures,
            )
        return dict(zip(hosts, values, strict=True))

    async def _phase(self, hosts: Sequence[str], phase: str) -> None:
        """One phase before the switch on every host, ``parallel`` at a time; any failure fails the deployment."""
        limit = asyncio.Semaphore(self.parallel)
        failures: dict[str, HostOutcome] = {}

        async def one(host: str) -> None:
            async with limit:
                target = self.targets[host]
                for step in self.plan.phase_steps(host, phase):
                    started = time.monotonic()
                    try:
                        await self._step(target, step)
                    except SlipwayError as exc:
                        failures[host] = HostOutcome(
                            host, False, step=step.label, error=str(exc), duration=time.monotonic() - started
                        )
                        return

        await asyncio.gather(*(one(h) for h in hosts))
        if failures:
            self.ledger.outcomes.update(failures)
            gone = store_gone(self.store, self.plan.environment)
            if gone is not None:  # not this release's fault: the whole deployment stops
                raise gone
            raise DeploymentError(  # counted against the environment, not a batch
                f"deployment of {self.plan.environment} failed before the switch on "
                f"{of_hosts(len(failures), len(self.plan.hosts))}",
                results=failures,
            )

    async def _step(self, target: Target, step: PlanStep) -> None:
        gone = store_gone(self.store, self.plan.environment)
        if gone is not None:  # no step goes forward that the store cannot record
            raise gone
        await self._forward_step(target, step)
        gone = store_gone(self.store, self.plan.environment)
        if gone is not None:
            raise gone

    async def _forward_step(self, target: Target, step: PlanStep) -> None:
        release = self.plan.release
        rdir = layout.release_dir(target, release.id)
        if step.action is Action.INSTALL:
            assert self.manifest is not None and self.source is not None
            manifest = self.manifest
            if self._objects is None:  # one cache for every host of this deployment
                self._objects = layout.ObjectCache(manifest, self.source)
            objects = self._objects

            async def install() -> str:
                marker = layout.Marker(release.commit, release.built_by)
                stats = await layout.install_release(
                    target, manifest, release.id, objects, shared=self.shared, timeout=step.timeout, marker=marker,
                    looked=self._looks.pop(target.name, None),
                )
                if stats.already_installed:
                    return f"release {release.id} already installed: nothing sent"
                return f"sent {stats.objects_sent} new file contents ({stats.bytes_sent} bytes)"

            await self.steps.run_builtin(target, step.label, install)
        elif step.action is Action.SWITCH:

            async def switch() -> str:
                await layout.switch_current(target, release.id, timeout=step.timeout)
                self.ledger.switched.append(target.name)
                self.store.set_host_release(
                    environment=self.plan.environment,
                    host=target.name,
                    release_id=release.id,
                    artifact_digest=release.digest,
                    commit=release.commit,
                    deployment_id=self.deployment_id,
                    run_id=self.run_id,
                )
                return f"current -> releases/{release.id} (was {self.ledger.previous.get(target.name) or 'nothing'})"

            await self.steps.run_builtin(target, step.label, switch)
        elif step.action is Action.SERVICES:
            await self._restart_services(target, step.label, release)
        else:
            cwd = target.root if step.phase == "prepare" else rdir
            await self.steps.run_command(
                target,
                step.label,
                step.command,
                cwd=cwd,
                timeout=step.timeout,
                env={"SLIPWAY_RELEASE_DIR": rdir, "SLIPWAY_HOST": target.name},
            )

    async def revert(self, name: str) -> str:
        """Switch one host's ``current`` back to the release it ran and restart it with that release's
        activate hooks (which see the release they restart, as when it was deployed)."""
        target = self.targets[name]
        prev_id = self.ledger.previous[name]
        assert prev_id is not None
        before = self.ledger.before.get(name)
        if before is None or before.release_id != prev_id:
            before = HostRelease(self.plan.environment, name, prev_id, "unknown", "unknown", 0.0, 0, None)
        record = before

        async def switch_back() -> str:
            await layout.switch_current(target, prev_id)
            self.store.set_host_release(
                environment=self.plan.environment,
                host=name,
                release_id=prev_id,
                artifact_digest=record.artifact_digest,
                commit=record.commit,
                deployment_id=record.deployment_id or self.deployment_id,
                run_id=record.run_id,
            )
            return f"current -> releases/{prev_id} (reverted)"

        await self.steps.run_builtin(target, "revert: switch-current", switch_back)
        release_dir = layout.release_dir(target, prev_id)
        for step in self.revert_steps(name, before):
            if step.action is Action.SERVICES:  # the earlier release's services, as it ran them
                await self._restart_services(
                    target, f"revert {step.label}", ReleaseInfo(prev_id, before.artifact_digest, before.commit)
                )
                continue
            await self.steps.run_command(
                target,
                f"revert {step.label}",
                step.command,
                cwd=release_dir,
                timeout=step.timeout,
                env={"SLIPWAY_RELEASE_DIR": release_dir, "SLIPWAY_RELEASE_ID": prev_id, "SLIPWAY_HOST": name},
            )
        return f"reverted to {prev_id}"

    async def _restart_services(self, target: Target, label: str, release: ReleaseInfo) -> None:
        restart = self.restart_services
        if restart is None:
            raise DeploymentError("this deployment has no services to restart", hint="report this as a bug")
        await self.steps.run_builtin(target, label, lambda: restart(target, release))


async def run_deployment(run: DeploymentRun) -> None:
    """Drive the hosts through the rollout, then record the outcome truthfully whatever happened."""
    await run.rollout().run()
