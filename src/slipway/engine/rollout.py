"""The rollout of a deployment, once for every kind of unit: batches, router, readiness, bake, breaker.

A unit is a host's release directory, a blue/green slot or a container target (:mod:`slipway.engine.units`).
For every batch of the plan (docs/strategies.md):

1. with a router, its units leave the rotation (drained: in-flight requests finish first);
2. each unit is deployed (:meth:`Units.deploy`: a host switches ``current`` and runs its activate and
   verify hooks and checks; a container target starts the new containers beside the old ones);
3. with a router, each unit passes the readiness gate, then rejoins the rotation;
4. a canary batch bakes: its checks (and readiness) repeat every ``check_interval`` for ``bake_time``;
   with ``on_success: pause`` a healthy canary parks the deployment for a person (:mod:`slipway.engine.pause`);
5. the strategy's pause, then the next batch.

A unit that fails counts against the deployment circuit breaker. Below the threshold it is reverted on its
own (back to the release it ran, restarted, ready, back in rotation) and the rollout goes on; the
deployment ends as failed, naming those units. Once the threshold is reached the breaker trips: no new
batch starts and every unit this deployment switched goes back to the release it had (or, with
``auto_rollback: false`` or ``on_failure: halt`` for failed checks, every unit stays as it is for a
person). Without a ``circuit_breaker`` the threshold is 1: the first failure reverts every unit.

Whatever happens, :meth:`Rollout.run` tells the store truthfully how each unit fared (:mod:`slipway.engine.verdict`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

from slipway.engine.events import Observer
from slipway.engine.pause import DeploymentParked, Resumed
from slipway.engine.strategy import Batch, CircuitBreakerPolicy, failure_threshold
from slipway.engine.units import Ledger, Units
from slipway.engine.verdict import Verdict
from slipway.errors import CanaryRejected, CheckFailed, DeploymentError, HostOutcome, SlipwayError, of_hosts
from slipway.ports import DeploymentLog

#: Without a configured breaker, one failed host is enough to stop and revert (the behaviour before breakers).
FIRST_FAILURE = CircuitBreakerPolicy(threshold=1, min_threshold=1, max_threshold=1)


class TrafficGate(Protocol):
    """The router and readiness gate as the runner sees them, by unit name."""

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
    """No unit is left drained by an error in the middle of a batch.

    When the body raises (a router error while draining, enabling or in the readiness gate, a store outage,
    an interruption), each of ``hosts`` still out of rotation is put back, one by one and best effort; the
    error is re-raised, and the units that could not be put back are named in its hint. The breaker's own
    decisions (revert, halt) are taken outside this guard: they deal with the rotation themselves.
    """
    try:
        yield
    except BaseException as error:
        if traffic is not None:
            await put_back_each(traffic, hosts, error, observer)
        raise


async def put_back_each(traffic: TrafficGate, hosts: Sequence[str], error: BaseException, observer: Observer) -> None:
    """Put each of ``hosts`` that is out back into rotation; what fails is added to ``error``'s hint."""
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


def is_check_failure(exc: BaseException) -> bool:
    """Whether a unit failed a check (``on_failure: halt`` applies), not a hook or its transport."""
    return isinstance(exc, CheckFailed) or isinstance(exc.__cause__, CheckFailed)


@dataclass
class Rollout(Verdict):
    """One deployment of one environment's units, batch by batch, recorded in the store."""

    units: Units
    log: DeploymentLog
    deployment_id: int
    run_id: int | None
    observer: Observer
    #: The plan's batches (planner.plan_rollout / strategy.plan_batches), in order.
    batches: Sequence[Batch]
    #: The deployment circuit breaker; None: the first failed unit stops the deployment (threshold 1).
    breaker: CircuitBreakerPolicy | None = None
    #: The router in front of the units with the readiness gate; None: no traffic switching.
    traffic: TrafficGate | None = None
    #: Checks the environment once every batch is on (smoke checks, dependencies); raises CheckFailed.
    verify_environment: Callable[[], Awaitable[None]] | None = None
    #: ``on_failure: halt``: a failed check leaves every unit as it is for a person, instead of reverting.
    halt_on_failed_check: bool = False
    #: A deployment parked after its canary and picked up again (approved or rejected).
    resumed: Resumed | None = None
    #: At most this many units of a batch are deployed at once.
    parallel: int = 10
    #: Waits between batches and while a canary bakes (injected: tests do not sleep).
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    #: Units that failed and were dealt with below the threshold.
    failed: dict[str, HostOutcome] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger:
        """What happened to each unit so far."""
        return self.units.ledger

    @property
    def threshold(self) -> int:
        """How many failed units trip the breaker."""
        return failure_threshold(self.breaker or FIRST_FAILURE, len(self.units.names))

    async def execute(self) -> None:
        """Prepare, every batch, the environment's checks, then the kind's finish; raise when a unit failed."""
        try:
            await self.units.prepare(self.resumed)
            if self.resumed is not None:  # the canary units run this release now: what they ran is in the store
                self.ledger.previous.update(self.resumed.previous)
                self.ledger.before.update(self.resumed.before)
                self.ledger.switched[:] = list(self.resumed.previous)
            await self.run_batches()
            if self.verify_environment is not None:
                await self._verify_environment()
            self.raise_for_partial_failure()
        except DeploymentError as exc:
            explained = self.units.explain(exc)
            if explained is exc:
                raise
            raise explained from exc
        for unit in self.units.names:
            self.ledger.outcomes.setdefault(unit, HostOutcome(unit, True, release=self.units.release_id))
        await self.units.finish(self)

    async def run_batches(self) -> None:
        """Every batch in order; raises DeploymentError (or DeploymentHalted, DeploymentParked) on the way."""
        batches = self.batches
        if self.resumed is not None and self.resumed.rejected is not None:
            await self._reject(self.resumed.rejected)
        for batch in batches:
            if self.resumed is not None and batch.index < self.resumed.next_batch:
                continue  # ran before the deployment parked
            started = time.monotonic()
            self.observer.batch_started(batch.index, len(batches), batch.kind.value, batch.hosts)
            await self._batch(batch)
            if batch.bake_time:
                await self._bake(batch)
            bad = [h for h in batch.hosts if h in self.failed]
            self.observer.batch_finished(batch.index, len(batches), bad, time.monotonic() - started)
            if batch.wait_for_approval and not bad and batch.index + 1 < len(batches):
                raise DeploymentParked(self.units.environment, next_batch=batch.index + 1, hosts=batch.hosts)
            if batch.pause_after:
                self.observer.message(f"pausing {batch.pause_after:g}s before the next batch")
                await self.sleep(batch.pause_after)

    async def _batch(self, batch: Batch) -> None:
        hosts = list(batch.hosts)
        async with back_in_rotation_on_error(self.traffic, hosts, self.observer):
            if self.traffic is not None:
                await self.traffic.take_out(hosts)
            failures = await self._deploy(hosts)
            if self.traffic is not None:
                failures.update(await self._ready([h for h in hosts if h not in failures]))
        if failures:  # the breaker's decision: it reverts (each unit back in rotation) or halts for a person
            unswitched = [h for h in failures if h not in self.ledger.switched]
            try:
                await self._failed(failures, batch)
            finally:
                await self._back_unswitched(unswitched)
        healthy = [h for h in hosts if h not in failures]
        async with back_in_rotation_on_error(self.traffic, healthy, self.observer):
            if self.traffic is not None and healthy:
                await self.traffic.put_back(healthy)

    async def _back_unswitched(self, hosts: Sequence[str]) -> None:
        """Units that failed before their switch still run what they ran: each goes back in rotation once
        ready (nothing reverts them, since nothing changed what they serve)."""
        traffic = self.traffic
        if traffic is None:
            return
        for host in hosts:
            if not traffic.is_out(host):
                continue
            try:
                await traffic.ready(host)
                await traffic.put_back([host])
            except SlipwayError as exc:
                self._note(host, f"left out of rotation: {exc}")

    async def _deploy(self, hosts: Sequence[str]) -> dict[str, HostOutcome]:
        """Deploy the units of a batch, ``parallel`` at a time; the failed ones' outcomes."""
        limit = asyncio.Semaphore(self.parallel)

        async def one(host: str) -> HostOutcome | None:
            async with limit:
                return await self.units.deploy(host)

        tasks = [asyncio.ensure_future(one(h)) for h in hosts]
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:  # the units that switched are reverted by run()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for result in results:  # not a unit's fault (the store stopped answering): the deployment stops
            if isinstance(result, BaseException):
                raise result
        failures = {r.host: r for r in results if isinstance(r, HostOutcome)}
        self.ledger.outcomes.update(failures)
        return failures

    async def _ready(self, hosts: Sequence[str]) -> dict[str, HostOutcome]:
        """The readiness gate on every unit; the failures as outcomes (a failed gate is a failed check)."""
        traffic = self.traffic
        assert traffic is not None

        async def one(host: str) -> HostOutcome | None:
            started = time.monotonic()
            try:
                await traffic.ready(host)
            except SlipwayError as exc:
                if isinstance(exc, CheckFailed):
                    self.ledger.failed_checks.add(host)
                return HostOutcome(host, False, step="readiness", error=str(exc), duration=time.monotonic() - started)
            return None

        results = await asyncio.gather(*(one(h) for h in hosts))
        failures = {r.host: r for r in results if r is not None}
        self.ledger.outcomes.update(failures)
        return failures

    async def _bake(self, batch: Batch) -> None:
        """Repeat the batch's checks (and readiness) every check_interval for bake_time."""
        rounds = max(1, math.ceil(batch.bake_time / batch.check_interval)) if batch.check_interval else 1
        interval = batch.bake_time / rounds
        for n in range(rounds):
            await self.sleep(interval)
            hosts = [h for h in batch.hosts if h not in self.failed]
            if not hosts:
                return
            failures = await self._check(hosts)
            self.observer.message(
                f"canary bake {n + 1}/{rounds}: {len(hosts) - len(failures)} of {len(hosts)} healthy"
            )
            if failures:
                await self._failed(failures, batch)

    async def _check(self, hosts: Sequence[str]) -> dict[str, HostOutcome]:
        async def one(host: str) -> HostOutcome | None:
            try:
                await self.units.verify(host)
            except SlipwayError as exc:
                if is_check_failure(exc):
                    self.ledger.failed_checks.add(host)
                return HostOutcome(host, False, step="canary checks", error=str(exc))
            return None

        results = await asyncio.gather(*(one(h) for h in hosts))
        failures = {r.host: r for r in results if r is not None}
        self.ledger.outcomes.update(failures)
        if self.traffic is not None:
            failures.update(await self._ready([h for h in hosts if h not in failures]))
        return failures

    async def _failed(self, failures: dict[str, HostOutcome], batch: Batch) -> None:
        """Count the failures against the breaker: trip, or revert just these units and go on."""
        self.failed.update(failures)
        count, total = len(self.failed), len(self.units.names)
        if count >= self.threshold:
            await self._trip(failures, batch)
        self.observer.message(
            f"{of_hosts(len(failures), len(batch.hosts))} of batch {batch.index + 1} failed ({count} of {total}, "
            "breaker threshold "
            f"{self.threshold}): reverting {', '.join(failures)} alone and going on"
        )
        await self.revert_switched(only=list(failures))

    async def _trip(self, failures: dict[str, HostOutcome], batch: Batch) -> None:
        count, total, environment = len(self.failed), len(self.units.names), self.units.environment
        if self.breaker is None:
            error = DeploymentError(
                f"deployment of {environment} failed after the switch on {of_hosts(len(failures), total)}",
                results=failures,
            )
        else:
            error = DeploymentError(
                f"deployment of {environment} failed: circuit breaker tripped: {count} of {total} hosts "
                f"failed (threshold {self.threshold})",
                results=dict(self.failed),
            )
        self.observer.message(error.message)
        if self._halts():
            if self.traffic is not None:  # the healthy units of this batch serve; the failed ones stay out
                healthy = [h for h in batch.hosts if h not in self.failed and self.traffic.is_out(h)]
                if healthy:
                    await self.traffic.put_back(healthy)
            raise self.halted(error)
        await self.revert_switched()
        raise DeploymentError(error.message, results=self.ledger.outcomes)

    def _halts(self) -> bool:
        """Whether to halt rather than revert: ``auto_rollback: false``, or ``on_failure: halt`` and only
        checks failed (a failed hook always reverts)."""
        if self.breaker is not None and not self.breaker.auto_rollback:
            return True
        failed = {h for h, o in self.ledger.outcomes.items() if not o.ok}
        return self.halt_on_failed_check and bool(failed) and failed <= self.ledger.failed_checks

    async def _reject(self, why: str) -> None:
        """A person rejected the parked canary: its units go back to the release each ran before."""
        ledger, environment = self.ledger, self.units.environment
        hosts = list(ledger.switched)
        self.observer.message(f"canary rejected ({why}): reverting {', '.join(hosts) or 'no host'}")
        for host in hosts:
            ledger.outcomes[host] = HostOutcome(host, False, step="canary", error=f"canary rejected: {why}")
        await self.revert_switched()
        for host in self.units.names:
            ledger.outcomes.setdefault(host, HostOutcome(host, False, error="not deployed: the canary was rejected"))
        failed = [h for h in hosts if "revert failed" in ledger.outcomes[h].error or "left out" in ledger.outcomes[h].error]
        if failed:
            raise DeploymentError(
                f"deployment of {environment} rejected after its canary ({why}): reverting "
                f"{', '.join(failed)} failed",
                results=ledger.outcomes,
            )
        raise CanaryRejected(
            f"deployment of {environment} rejected after its canary ({why}): "
            f"{', '.join(hosts) or 'no host'} went back to the release each ran before",
            results=ledger.outcomes,
        )

    async def _verify_environment(self) -> None:
        """Smoke checks and dependencies once every unit is on; a failure follows the environment's policy."""
        assert self.verify_environment is not None
        ledger, names = self.ledger, self.units.names
        try:
            await self.verify_environment()
        except CheckFailed as exc:
            summary = " ".join(str(exc).split())
            for host in names:
                ledger.outcomes[host] = HostOutcome(host, False, step="checks after the deployment", error=summary[:300])
            ledger.failed_checks.update(names)
            error = DeploymentError(
                f"deployment of {self.units.environment} failed its checks after every host was on", results={}
            )
            if self.halt_on_failed_check:
                raise self.halted(error) from exc
            await self.revert_switched()
            raise DeploymentError(error.message, results=ledger.outcomes) from exc

    async def revert_switched(self, only: Sequence[str] | None = None) -> None:
        """Put every unit this deployment switched (or those of ``only``) back on the release it had.

        Without a router, in parallel; behind one, one unit at a time: out of rotation, back, ready, in
        again, so users never reach a unit while it restarts and the others keep serving.
        """
        ledger, release = self.ledger, self.units.release_id
        chosen = [h for h in ledger.switched if only is None or h in only]
        ledger.switched[:] = [h for h in ledger.switched if h not in chosen]
        for host in chosen:
            if ledger.previous.get(host) is None:
                self._note(host, "nothing ran there before: left on this release", release=release)
        hosts = [h for h in chosen if ledger.previous.get(h) and ledger.previous[h] != release]
        if not hosts:
            return
        self.observer.message(f"reverting {', '.join(hosts)} to the release each ran before")
        if self.traffic is None:
            limit = asyncio.Semaphore(self.parallel)

            async def one(host: str) -> None:
                async with limit:
                    await self._revert(host)

            await asyncio.gather(*(one(h) for h in hosts))
            return
        traffic = self.traffic
        for host in sorted(hosts, key=lambda h: not traffic.is_out(h)):  # hosts already out go first
            try:
                await traffic.take_out([host])
            except SlipwayError as exc:
                self._note(host, f"revert failed: {exc}", release=release)
                continue
            await self._revert(host)
            try:
                await traffic.ready(host)
                await traffic.put_back([host])
            except SlipwayError as exc:
                self._note(host, f"reverted but left out of rotation: {exc}", step="revert")

    async def _revert(self, host: str) -> None:
        previous = self.ledger.previous[host]
        try:
            note = await self.units.revert(host)
        except SlipwayError as exc:  # the evidence of why it went back stays with it
            self._note(host, f"revert failed: {exc}", release=self.units.release_id)
            return
        self._note(host, note, release=previous)

    def _note(self, host: str, note: str, *, release: str | None = None, step: str | None = None) -> None:
        """Add ``note`` to the unit's outcome (a failure from now on)."""
        old = self.ledger.outcomes.get(host)
        self.ledger.outcomes[host] = HostOutcome(
            host,
            False,
            step=step or (old.step if old and old.step else "reverted"),
            error=(old.error + "; " if old and old.error else "") + note,
            release=release if release is not None else (old.release if old else None),
            duration=old.duration if old else 0.0,
        )
