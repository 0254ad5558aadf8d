"""The deployment runner: executes a :class:`~slipway.engine.planner.DeploymentPlan` through Target ports.

Guarantees, whatever fails:

- before the switch nothing a user sees changes; a failure there leaves every host as it was;
- ``current`` only ever points at a complete release (see :mod:`slipway.targets.release`);
- the store is told which release a host runs right after its ``current`` moves, and again when it moves
  back, so it always says truthfully what runs where;
- when a host fails after switching, every host this deployment switched is put back on the release it
  had (its activate hooks run again to restart it), and the deployment is recorded as failed with the
  per-host evidence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from slipway.artifacts.archive import Manifest
from slipway.engine.pause import DeploymentParked, Resumed, park
from slipway.engine.planner import PRE_SWITCH, Action, DeploymentPlan, PlanStep
from slipway.engine.steps import StepRunner
from slipway.engine.strategy import CircuitBreakerPolicy
from slipway.errors import (
    AuthenticationFailed,
    CheckFailed,
    DeploymentError,
    DeploymentHalted,
    GateError,
    HostKeyError,
    HostOutcome,
    HostsUnreachable,
    HostUnreachable,
    SlipwayError,
    StoreError,
    of_hosts,
)
from slipway.model.records import HostRelease
from slipway.model.states import State
from slipway.ports import Target
from slipway.targets import release as layout

if TYPE_CHECKING:
    from slipway.engine.rollout import TrafficGate
    from slipway.store.repository import Store

#: Builds the steps that restart ``host`` on the release it ran before (activate hooks of that release).
RevertSteps = Callable[[str, HostRelease], Sequence[PlanStep]]
#: Errors that mean "this host could not be reached or would not let us in", not "the release is bad".
CONNECT_FAULTS = (HostUnreachable, AuthenticationFailed, HostKeyError)
ObjectSource = Callable[[set[str]], Awaitable[dict[str, bytes]]]


@dataclass
class DeploymentRun:
    """One deployment of one environment, from plan to recorded outcome."""

    plan: DeploymentPlan
    targets: Mapping[str, Target]
    steps: StepRunner
    store: Store
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
    #: Hosts whose checks failed (hook failures are not in here: they always revert).
    failed_checks: set[str] = field(default_factory=set)
    #: The deployment circuit breaker; None: the first failed host stops the deployment (threshold 1).
    breaker: CircuitBreakerPolicy | None = None
    #: The router in front of the hosts with the readiness gate; None: no traffic switching.
    traffic: TrafficGate | None = None
    #: Waits between batches and while a canary bakes (injected: tests do not sleep).
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: A deployment parked after its canary and picked up again (approved or rejected).
    resumed: Resumed | None = None
    before: dict[str, HostRelease | None] = field(default_factory=dict)
    previous: dict[str, str | None] = field(default_factory=dict)
    switched: list[str] = field(default_factory=list)
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    _objects: layout.ObjectCache | None = None

    async def execute(self) -> None:
        """Run the plan; raise DeploymentError (after reverting) if any host fails."""
        known = {h.host: h for h in self.store.host_releases(self.plan.environment)}
        self.before = {h: known.get(h) for h in self.plan.hosts}
        if self.plan.rollback:
            await self._look_before_rollback()
        else:
            currents = await self._each(self.plan.hosts, lambda t: layout.current_release(t))
            self.previous = {h: (str(r) if r else None) for h, r in currents.items()}
            self._back_to_last_good(known)
        if self.resumed is not None:  # the canary hosts run this release now: what they ran is in the store
            self.previous.update(self.resumed.previous)
            self.before.update(self.resumed.before)
            self.switched = list(self.resumed.previous)
        if not self.plan.rollback and self.resumed is None:
            for phase in PRE_SWITCH:
                if phase == "migrate" and self.before_migrate is not None:
                    await self.before_migrate()  # once, not per host; a failure here switched nothing
                await self._phase(self.plan.hosts, (phase,))
        from slipway.engine.rollout import Rollout  # the batch loop: strategy, router, breaker

        rollout = Rollout(self)
        await rollout.run_batches()
        if self.verify_environment is not None:
            await self._verify_environment()
        rollout.raise_for_partial_failure()
        for host in self.plan.hosts:
            self.outcomes.setdefault(host, HostOutcome(host, True, release=self.plan.release.id))
        if not self.plan.rollback:
            try:
                await self._each(
                    self.plan.hosts,
                    lambda t: layout.prune_releases(
                        t, self.keep_releases, [r for r in (self.plan.release.id, self.previous.get(t.name)) if r]
                    ),
                    what="prune old releases",
                )
            except DeploymentError as exc:  # the new release runs everywhere: old ones left behind are no failure
                self.outcomes = {h: o for h, o in self.outcomes.items() if o.ok}
                self.steps.observer.message(f"warning: {exc}")

    def _back_to_last_good(self, known: Mapping[str, HostRelease]) -> None:
        """Hosts left on a release by a deployment that did not succeed (a crash, an interrupted run) go back,
        if this deployment fails, to the environment's last release that did succeed, never to that one."""
        history = self.store.deployments(self.plan.environment, limit=200)
        good = next((d for d in history if d.state is State.SUCCEEDED), None)
        if good is None:  # nothing ever succeeded here: there is nothing better to go back to
            return
        states = {d.id: d.state for d in history}
        commit: str | None = None
        for host, prev in self.previous.items():
            rec = known.get(host)
            if prev is None or prev == good.release_id or rec is None or rec.release_id != prev:
                continue
            if rec.deployment_id == self.deployment_id or states.get(rec.deployment_id) in (None, State.SUCCEEDED):
                continue
            if commit is None:
                run = self.store.get_run(good.run_id) if good.run_id is not None else None
                artifact = self.store.get_artifact(good.artifact_digest) if run is None else None
                commit = run.commit if run else (artifact.commit if artifact else "unknown")
            self.previous[host] = good.release_id
            self.before[host] = HostRelease(
                self.plan.environment, host, good.release_id, good.artifact_digest, commit,
                good.finished_at or good.started_at, good.id, good.run_id,
            )

    async def _look_before_rollback(self) -> None:
        """One round trip per host: what runs there, and whether the release to go back to is still there.

        A host that no longer has it (pruned by keep_releases) refuses the whole rollback before any host
        is touched, on the connections the rollback then uses.
        """
        release = self.plan.release.id
        seen = await self._each(self.plan.hosts, lambda t: layout.inspect_releases(t, release))
        looks = {h: cast(layout.HostReleases, v) for h, v in seen.items()}
        self.previous = {h: look.current for h, look in looks.items()}
        missing = [h for h, look in looks.items() if not look.has_release]
        if missing:
            for host in missing:
                self.outcomes[host] = HostOutcome(host, False, step="connect", error=f"release {release} is not installed")
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
            self.outcomes.update(failures)
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

    async def _phase(self, hosts: Sequence[str], phases: Sequence[str]) -> None:
        limit = asyncio.Semaphore(self.parallel)
        failures: dict[str, HostOutcome] = {}

        async def one(host: str) -> None:
            async with limit:
                target = self.targets[host]
                for phase in phases:
                    for step in self.plan.phase_steps(host, phase):
                        started = time.monotonic()
                        try:
                            await self._step(target, step)
                        except SlipwayError as exc:
                            failures[host] = HostOutcome(
                                host, False, step=step.label, error=str(exc), duration=time.monotonic() - started
                            )
                            return
                if self.verify_host is not None and phases[-1] == "verify":
                    started = time.monotonic()
                    try:
                        await self.verify_host(target)
                    except SlipwayError as exc:
                        if isinstance(exc, CheckFailed):
                            self.failed_checks.add(host)
                        failures[host] = HostOutcome(
                            host, False, step="verify checks", error=str(exc), duration=time.monotonic() - started
                        )

        tasks = [asyncio.ensure_future(one(h)) for h in hosts]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._revert_switched()
            raise
        if failures:
            self.outcomes.update(failures)
            gone = self.store_gone()
            if gone is not None:  # not this release's fault: the whole deployment stops and goes back
                raise gone
            where = "before the switch" if phases[0] in PRE_SWITCH else "after the switch"
            raise DeploymentError(  # counted against the environment, not the batch this phase ran for
                f"deployment of {self.plan.environment} failed {where} on "
                f"{of_hosts(len(failures), len(self.plan.hosts))}",
                results=failures,
            )

    def store_gone(self) -> StoreError | None:
        """The error to stop on once the store stopped answering: nothing goes forward it cannot record."""
        cause = self.store.unavailable
        if cause is None:
            return None
        where = self.store.journal.path if self.store.journal is not None else None
        return StoreError(
            f"the state store stopped answering during the deployment of {self.plan.environment} "
            f"({cause.message.splitlines()[0]}): every host this deployment switched went back to the release it "
            f"ran; what the store could not be told is in the journal {where}",
            hint="the next command writes the journal into the store once it answers; then 'slipway status' "
            "shows what runs where, and 'slipway run' (or 'slipway resume RUN') deploys again",
        )

    async def _step(self, target: Target, step: PlanStep) -> None:
        gone = self.store_gone()
        if gone is not None:  # no step goes forward that the store cannot record
            raise gone
        await self._forward_step(target, step)
        gone = self.store_gone()
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
                    target, manifest, release.id, objects, shared=self.shared, timeout=step.timeout, marker=marker
                )
                if stats.already_installed:
                    return f"release {release.id} already installed: nothing sent"
                return f"sent {stats.objects_sent} new file contents ({stats.bytes_sent} bytes)"

            await self.steps.run_builtin(target, step.label, install)
        elif step.action is Action.SWITCH:

            async def switch() -> str:
                await layout.switch_current(target, release.id, timeout=step.timeout)
                self.switched.append(target.name)
                self.store.set_host_release(
                    environment=self.plan.environment,
                    host=target.name,
                    release_id=release.id,
                    artifact_digest=release.digest,
                    commit=release.commit,
                    deployment_id=self.deployment_id,
                    run_id=self.run_id,
                )
                return f"current -> releases/{release.id} (was {self.previous.get(target.name) or 'nothing'})"

            await self.steps.run_builtin(target, step.label, switch)
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

    def _halts(self) -> bool:
        """Whether to halt rather than revert: the policy says so and only checks failed (not hooks)."""
        failed = {h for h, o in self.outcomes.items() if not o.ok}
        return self.halt_on_failed_check and bool(failed) and failed <= self.failed_checks

    async def _verify_environment(self) -> None:
        """Smoke checks and dependencies once every host is on; a failure follows the environment's policy."""
        assert self.verify_environment is not None
        try:
            await self.verify_environment()
        except CheckFailed as exc:
            summary = " ".join(str(exc).split())
            for host in self.plan.hosts:
                self.outcomes[host] = HostOutcome(host, False, step="checks after the deployment", error=summary[:300])
            self.failed_checks.update(self.plan.hosts)
            error = DeploymentError(
                f"deployment of {self.plan.environment} failed its checks after every host was on", results={}
            )
            if self.halt_on_failed_check:
                raise self._halted(error) from exc
            await self._revert_switched()
            raise DeploymentError(error.message, results=self.outcomes) from exc

    def _halted(self, error: DeploymentError) -> DeploymentHalted:
        """The error of a deployment stopped by ``on_failure: halt``; hosts stay as they are."""
        release, env = self.plan.release.id, self.plan.environment
        for host in self.plan.hosts:
            if host not in self.outcomes:
                on = host in self.switched
                self.outcomes[host] = HostOutcome(
                    host,
                    on,
                    error="" if on else "not deployed: the deployment halted before this host",
                    release=release if on else self.previous.get(host),
                )
        earlier = sorted({p for h in self.switched if (p := self.previous.get(h)) and p != release})
        if len(earlier) == 1:
            back = f"go back with 'slipway rollback {env} --to {earlier[0]} --reason TEXT'"
        elif earlier:
            back = f"go back with 'slipway rollback {env} --to RELEASE --reason TEXT' (hosts ran {', '.join(earlier)})"
        else:
            back = "there is no earlier release to go back to"
        logs = f"'slipway logs {self.run_id}' shows the evidence" if self.run_id else "the step logs show the evidence"
        left = [h for h in self.plan.hosts if h in self.switched]
        return DeploymentHalted(
            f"{error.message.splitlines()[0]}; halted (on_failure: halt): "
            f"{', '.join(left) or 'no host'} left on release {release} as it is",
            results=self.outcomes,
            hint=f"a person decides now: {logs}; {back}, or fix the release and deploy it again",
        )

    async def _revert_switched(self, only: Sequence[str] | None = None) -> None:
        """Put every host this deployment switched (or those of ``only``) back on the release it had."""
        chosen = [h for h in self.switched if only is None or h in only]
        hosts = [h for h in chosen if self.previous.get(h) and self.previous[h] != self.plan.release.id]
        self.switched = [h for h in self.switched if h not in chosen]
        if not hosts:
            return
        self.steps.observer.message(f"reverting {', '.join(hosts)} to the release each ran before")

        async def revert(host: str) -> None:
            target = self.targets[host]
            prev_id = self.previous[host]
            assert prev_id is not None
            before = self.before.get(host) or HostRelease(
                self.plan.environment, host, prev_id, "unknown", "unknown", 0.0, 0, None
            )
            if before.release_id != prev_id:
                before = HostRelease(self.plan.environment, host, prev_id, "unknown", "unknown", 0.0, 0, None)

            async def switch_back() -> str:
                await layout.switch_current(target, prev_id)
                self.store.set_host_release(
                    environment=self.plan.environment,
                    host=host,
                    release_id=prev_id,
                    artifact_digest=before.artifact_digest,
                    commit=before.commit,
                    deployment_id=before.deployment_id or self.deployment_id,
                    run_id=before.run_id,
                )
                return f"current -> releases/{prev_id} (reverted)"

            try:
                await self.steps.run_builtin(target, "revert: switch-current", switch_back)
                for step in self.revert_steps(host, before):
                    await self.steps.run_command(
                        target,
                        f"revert {step.label}",
                        step.command,
                        cwd=layout.release_dir(target, prev_id),
                        timeout=step.timeout,
                        # the hooks see the release they restart, as when it was deployed
                        env={
                            "SLIPWAY_RELEASE_DIR": layout.release_dir(target, prev_id),
                            "SLIPWAY_RELEASE_ID": prev_id,
                            "SLIPWAY_HOST": host,
                        },
                    )
                old = self.outcomes.get(host)
                self.outcomes[host] = HostOutcome(
                    host,
                    False,
                    step=old.step if old else "reverted",
                    error=(old.error + "; " if old else "") + f"reverted to {prev_id}",
                    release=prev_id,
                )
            except SlipwayError as exc:
                self.outcomes[host] = HostOutcome(host, False, step="revert", error=f"revert failed: {exc}")

        if self.traffic is None:
            await asyncio.gather(*(revert(h) for h in hosts))
            return
        traffic = self.traffic
        # Behind a router, one host at a time: out of rotation, back, ready, in again. Users never reach a
        # host while it restarts, and the others keep serving. Hosts already out go first.
        for host in sorted(hosts, key=lambda h: not traffic.is_out(h)):
            try:
                await traffic.take_out([host])
            except SlipwayError as exc:
                self.outcomes[host] = HostOutcome(host, False, step="revert", error=f"revert failed: {exc}")
                continue
            await revert(host)
            try:
                await traffic.ready(host)
                await traffic.put_back([host])
            except SlipwayError as exc:
                old = self.outcomes.get(host)
                note = f"reverted but left out of rotation: {exc}"
                self.outcomes[host] = HostOutcome(host, False, step="revert", error=(old.error + "; " if old else "") + note)

    def record_hosts(self, state: State) -> None:
        """Write the per-host outcome of this deployment to the store."""
        for host in self.plan.hosts:
            outcome = self.outcomes.get(host)
            ok = outcome.ok if outcome else state is State.SUCCEEDED
            self.store.record_host(
                self.deployment_id,
                host=host,
                from_release=self.previous.get(host),
                to_release=self.plan.release.id,
                state=State.SUCCEEDED if ok else (State.CANCELLED if state is State.CANCELLED else State.FAILED),
                error=None if ok or outcome is None else outcome.error,
                duration=outcome.duration if outcome else None,
            )


def _logs_hint(run: DeploymentRun) -> str:
    """Point at ``slipway logs`` only when the run recorded a step there (a failure before any step has none)."""
    if run.run_id is None:
        return ""
    try:
        recorded = bool(run.store.steps(run.run_id))
    except StoreError:  # cannot tell now; the journal may hold them
        recorded = True
    return f"'slipway logs {run.run_id}' shows every step's output" if recorded else ""


async def run_deployment(run: DeploymentRun) -> None:
    """Execute, then record the outcome truthfully whatever happened; re-raise failures."""
    try:
        await run.execute()
    except DeploymentParked as parked:  # not a failure: the deployment waits for a person
        park(run, parked)
        raise
    except DeploymentHalted as exc:
        run.record_hosts(State.FAILED)
        run.store.finish_deployment(run.deployment_id, State.FAILED, reason=exc.message.splitlines()[0])
        raise
    except DeploymentError as exc:
        run.record_hosts(State.FAILED)
        run.store.finish_deployment(run.deployment_id, State.FAILED, reason=exc.message.splitlines()[0])
        raise type(exc)(  # keeps the kind (a rejected canary is not a broken release)
            exc.message.splitlines()[0]
            + (
                "; hosts already switched were reverted"
                if any("reverted" in o.error for o in run.outcomes.values())
                and not any(o.ok for o in run.outcomes.values())
                else ""
            ),
            results=run.outcomes,
            hint="; ".join(  # keep what the error already advised (e.g. unreachable hosts: see docs/ssh.md)
                h for h in (exc.hint, _logs_hint(run)) if h
            ),
        ) from exc
    except StoreError as exc:  # the store stopped answering: go back without it (writes go to the journal)
        await run._revert_switched()
        run.record_hosts(State.FAILED)
        run.store.finish_deployment(run.deployment_id, State.FAILED, reason="the state store stopped answering")
        # A read may have met the outage first (a bare StoreError): say where the journal is all the same.
        gone = run.store_gone()
        error = gone if gone is not None and "journal" not in exc.message else exc
        stuck = {h: o.error for h, o in run.outcomes.items() if "revert failed" in o.error}
        if stuck:
            raise StoreError(
                f"{error.message.splitlines()[0]}; putting back failed on "
                + "; ".join(f"{h}: {e}" for h, e in stuck.items()),
                hint="'slipway rollback ENV' once the hosts answer; " + error.hint,
            ) from exc
        if error is exc:
            raise
        raise error from exc
    except (asyncio.CancelledError, KeyboardInterrupt):
        # _phase reverts when the stop lands in a batch; between batches (traffic, bake, pause) it is here
        await run._revert_switched()
        run.record_hosts(State.CANCELLED)
        run.store.finish_deployment(run.deployment_id, State.CANCELLED, reason="interrupted by the user")
        raise
    except SlipwayError as exc:
        run.record_hosts(State.FAILED)
        run.store.finish_deployment(run.deployment_id, State.FAILED, reason=str(exc).splitlines()[0])
        raise
    run.record_hosts(State.SUCCEEDED)
    run.store.finish_deployment(run.deployment_id, State.SUCCEEDED)

