"""The batch loop of a deployment: the strategy's batches, the router, readiness and the circuit breaker.

For every batch of the plan (docs/strategies.md):

1. with a router, its hosts leave the rotation (drained: in-flight requests finish first);
2. each host switches ``current``, runs its activate and verify hooks and its verify checks;
3. with a router, each host passes the readiness gate, then rejoins the rotation;
4. a canary batch bakes: its checks (and readiness) repeat every ``check_interval`` for ``bake_time``;
5. the strategy's pause, then the next batch.

A host that fails counts against the deployment circuit breaker. Below the threshold it is reverted on its
own (back to the release it ran, restarted, ready, back in rotation) and the rollout goes on; the
deployment ends as failed, naming those hosts. Once the threshold is reached the breaker trips: no new
batch starts and every host this deployment switched goes back to the release it had (or, with
``auto_rollback: false`` or ``on_failure: halt`` for failed checks, every host stays as it is for a
person). Without a ``circuit_breaker`` the threshold is 1: the first failure reverts every host.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

from slipway.engine.events import Observer
from slipway.engine.pause import DeploymentParked
from slipway.engine.planner import POST_SWITCH
from slipway.engine.strategy import Batch, BatchKind, CircuitBreakerPolicy, failure_threshold
from slipway.errors import CanaryRejected, CheckFailed, DeploymentError, HostOutcome, SlipwayError, of_hosts

if TYPE_CHECKING:
    from slipway.engine.deploy import DeploymentRun

#: Without a configured breaker, one failed host is enough to stop and revert (the behaviour before breakers).
FIRST_FAILURE = CircuitBreakerPolicy(threshold=1, min_threshold=1, max_threshold=1)


class TrafficGate(Protocol):
    """The router and readiness gate as the runner sees them, by host name."""

    async def take_out(self, hosts: Sequence[str]) -> None:
        """Take ``hosts`` out of rotation and wait for their in-flight requests (bounded)."""
        ...

    async def ready(self, host: str) -> None:
        """Return once ``host`` passes the readiness gate; raise CheckFailed when it does not in time."""
        ...

    async def put_back(self, hosts: Sequence[str]) -> None:
        """Put ``hosts`` back into rotation."""
        ...

    def is_out(self, host: str) -> bool:
        """Whether ``host`` is out of rotation right now."""
        ...


@asynccontextmanager
async def back_in_rotation_on_error(
    traffic: TrafficGate | None, hosts: Sequence[str], observer: Observer
) -> AsyncIterator[None]:
    """No host is left drained by an error in the middle of a batch.

    When the body raises (a router error while draining, enabling or in the readiness gate, a store outage,
    an interruption), each of ``hosts`` still out of rotation is put back, one by one and best effort; the
    error is re-raised, and the hosts that could not be put back are named in its hint. The breaker's own
    decisions (revert, halt) are taken outside this guard: they deal with the rotation themselves.
    """
    try:
        yield
    except BaseException as error:
        if traffic is not None:
            await put_back_each(traffic, hosts, error, observer)
        raise


async def put_back_each(traffic: TrafficGate, hosts: Sequence[str], error: BaseException, observer: Observer) -> None:
    """Put each host of ``hosts`` that is out back into rotation; what fails is added to ``error``'s hint."""
    out = [h for h in hosts if traffic.is_out(h)]
    if not out:
        return
    stuck: dict[str, str] = {}
    for host in out:
        try:
            await traffic.put_back([host])
        except (SlipwayError, OSError) as exc:
            stuck[host] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    back = [h for h in out if h not in stuck]
    observer.message(
        f"putting {', '.join(out)} back in rotation after the error: "
        + (f"{', '.join(back)} back" if back else "none back")
        + (f"; {', '.join(stuck)} not confirmed" if stuck else "")
    )
    if stuck and isinstance(error, SlipwayError):
        note = "; ".join(f"{h}: {why}" for h, why in stuck.items())
        error.hint = "; ".join(
            h for h in (error.hint, f"could not put back in rotation ({note}): enable them in the router by hand") if h
        )


class Rollout:
    """Runs the plan's batches for one :class:`~slipway.engine.deploy.DeploymentRun`."""

    def __init__(self, run: DeploymentRun) -> None:
        self.run = run
        self.policy = run.breaker or FIRST_FAILURE
        self.threshold = failure_threshold(self.policy, len(run.plan.hosts))
        #: Hosts that failed and were dealt with below the threshold.
        self.failed: dict[str, HostOutcome] = {}

    async def run_batches(self) -> None:
        """Every batch in order; raises DeploymentError (or DeploymentHalted) when the breaker trips."""
        run = self.run
        batches = run.plan.rollout or tuple(
            Batch(index=i, kind=BatchKind.ALL, hosts=hosts) for i, hosts in enumerate(run.plan.batches)
        )
        if run.resumed is not None and run.resumed.rejected is not None:
            await self._reject(run.resumed.rejected)
        for batch in batches:
            if run.resumed is not None and batch.index < run.resumed.next_batch:
                continue  # ran before the deployment parked
            started = time.monotonic()
            run.steps.observer.batch_started(batch.index, len(batches), batch.kind.value, batch.hosts)
            await self._batch(batch)
            if batch.bake_time:
                await self._bake(batch)
            bad = [h for h in batch.hosts if h in self.failed]
            run.steps.observer.batch_finished(batch.index, len(batches), bad, time.monotonic() - started)
            if batch.wait_for_approval and not bad and batch.index + 1 < len(batches):
                raise DeploymentParked(run.plan.environment, next_batch=batch.index + 1, hosts=batch.hosts)
            if batch.pause_after:
                run.steps.observer.message(f"pausing {batch.pause_after:g}s before the next batch")
                await run.sleep(batch.pause_after)

    async def _batch(self, batch: Batch) -> None:
        run = self.run
        hosts = list(batch.hosts)
        failures: dict[str, HostOutcome] = {}
        async with back_in_rotation_on_error(run.traffic, hosts, run.steps.observer):
            if run.traffic is not None:
                await run.traffic.take_out(hosts)
            try:
                await run._phase(hosts, POST_SWITCH)
            except DeploymentError as exc:
                failures.update({h: o for h, o in exc.results.items() if not o.ok})
            if run.traffic is not None:
                failures.update(await self._ready([h for h in hosts if h not in failures]))
        if failures:  # the breaker's decision: it reverts (each host back in rotation) or halts for a person
            await self._failed(failures, batch)
        healthy = [h for h in hosts if h not in failures]
        async with back_in_rotation_on_error(run.traffic, healthy, run.steps.observer):
            if run.traffic is not None and healthy:
                await run.traffic.put_back(healthy)

    async def _ready(self, hosts: Sequence[str]) -> dict[str, HostOutcome]:
        """The readiness gate on every host; the failures as host outcomes (a failed gate is a failed check)."""
        traffic = self.run.traffic
        assert traffic is not None

        async def one(host: str) -> HostOutcome | None:
            started = time.monotonic()
            try:
                await traffic.ready(host)
            except SlipwayError as exc:
                if isinstance(exc, CheckFailed):
                    self.run.failed_checks.add(host)
                return HostOutcome(host, False, step="readiness", error=str(exc), duration=time.monotonic() - started)
            return None

        results = await asyncio.gather(*(one(h) for h in hosts))
        failures = {r.host: r for r in results if r is not None}
        self.run.outcomes.update(failures)
        return failures

    async def _bake(self, batch: Batch) -> None:
        """Repeat the batch's checks (and readiness) every check_interval for bake_time."""
        run = self.run
        rounds = max(1, math.ceil(batch.bake_time / batch.check_interval)) if batch.check_interval else 1
        interval = batch.bake_time / rounds
        for n in range(rounds):
            await run.sleep(interval)
            hosts = [h for h in batch.hosts if h not in self.failed]
            if not hosts:
                return
            failures = await self._check(hosts)
            run.steps.observer.message(
                f"canary bake {n + 1}/{rounds}: {len(hosts) - len(failures)} of {len(hosts)} healthy"
            )
            if failures:
                await self._failed(failures, batch)

    async def _check(self, hosts: Sequence[str]) -> dict[str, HostOutcome]:
        run = self.run
        failures: dict[str, HostOutcome] = {}
        if run.verify_host is not None:
            verify = run.verify_host

            async def one(host: str) -> HostOutcome | None:
                try:
                    await verify(run.targets[host])
                except SlipwayError as exc:
                    if isinstance(exc, CheckFailed):
                        run.failed_checks.add(host)
                    return HostOutcome(host, False, step="canary checks", error=str(exc))
                return None

            results = await asyncio.gather(*(one(h) for h in hosts))
            failures = {r.host: r for r in results if r is not None}
            run.outcomes.update(failures)
        if run.traffic is not None:
            failures.update(await self._ready([h for h in hosts if h not in failures]))
        return failures

    async def _failed(self, failures: dict[str, HostOutcome], batch: Batch) -> None:
        """Count the failures against the breaker: trip, or revert just these hosts and go on."""
        run = self.run
        self.failed.update(failures)
        count, total = len(self.failed), len(run.plan.hosts)
        if count >= self.threshold:
            await self._trip(failures, batch)
        run.steps.observer.message(
            f"{of_hosts(len(failures), len(batch.hosts))} of batch {batch.index + 1} failed ({count} of {total}, "
            "breaker threshold "
            f"{self.threshold}): reverting {', '.join(failures)} alone and going on"
        )
        await run._revert_switched(only=list(failures))

    async def _trip(self, failures: dict[str, HostOutcome], batch: Batch) -> None:
        run = self.run
        count, total = len(self.failed), len(run.plan.hosts)
        if run.breaker is None:
            error = DeploymentError(
                f"deployment of {run.plan.environment} failed after the switch on "
                f"{of_hosts(len(failures), total)}",
                results=failures,
            )
        else:
            error = DeploymentError(
                f"deployment of {run.plan.environment} failed: circuit breaker tripped: {count} of {total} hosts "
                f"failed (threshold {self.threshold})",
                results=dict(self.failed),
            )
        run.steps.observer.message(error.message)
        if run._halts() or (run.breaker is not None and not run.breaker.auto_rollback):
            if run.traffic is not None:  # the healthy hosts of this batch serve; the failed ones stay out
                healthy = [h for h in batch.hosts if h not in self.failed and run.traffic.is_out(h)]
                if healthy:
                    await run.traffic.put_back(healthy)
            raise run._halted(error)
        await run._revert_switched()
        raise DeploymentError(error.message, results=run.outcomes)

    async def _reject(self, why: str) -> None:
        """A person rejected the parked canary: its hosts go back to the release each ran before."""
        run = self.run
        hosts = list(run.switched)
        run.steps.observer.message(f"canary rejected ({why}): reverting {', '.join(hosts) or 'no host'}")
        for host in hosts:
            run.outcomes[host] = HostOutcome(host, False, step="canary", error=f"canary rejected: {why}")
        await run._revert_switched()
        for host in run.plan.hosts:
            run.outcomes.setdefault(host, HostOutcome(host, False, error="not deployed: the canary was rejected"))
        failed = [h for h in hosts if "revert failed" in run.outcomes[h].error or "left out" in run.outcomes[h].error]
        if failed:
            raise DeploymentError(
                f"deployment of {run.plan.environment} rejected after its canary ({why}): reverting "
                f"{', '.join(failed)} failed",
                results=run.outcomes,
            )
        raise CanaryRejected(
            f"deployment of {run.plan.environment} rejected after its canary ({why}): "
            f"{', '.join(hosts) or 'no host'} went back to the release each ran before",
            results=run.outcomes,
        )

    def raise_for_partial_failure(self) -> None:
        """After the last batch: hosts that failed below the threshold make the deployment a failure."""
        run = self.run
        if not self.failed:
            return
        for host in run.plan.hosts:
            run.outcomes.setdefault(host, HostOutcome(host, True, release=run.plan.release.id))
        raise DeploymentError(
            f"deployment of {run.plan.environment} failed on {len(self.failed)} of {len(run.plan.hosts)} hosts, "
            f"below the circuit breaker threshold ({self.threshold}): {', '.join(self.failed)} went back to the "
            f"release each ran before; the other hosts run {run.plan.release.id}",
            results=run.outcomes,
        )
