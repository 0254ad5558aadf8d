"""Check external dependencies through their circuit breakers, failing fast while a breaker is open."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from slipway.checks.breaker import (
    BreakerRepository,
    BreakerState,
    BreakerStatus,
    allow,
    record,
    retry_at,
)
from slipway.checks.runner import CheckResult, CheckRunner, raise_for_failures
from slipway.errors import ConfigError, DependencyUnavailable, StoreError
from slipway.model.checks import BreakerPolicy, CheckSpec
from slipway.ports import Clock

T = TypeVar("T")
#: How often a breaker update is retried when another process saved in between.
MAX_CONFLICTS = 40


class DependencyGuard:
    """Runs each dependency's check only when its breaker allows, and records every outcome.

    The breaker of a dependency is keyed by the check's name, so give dependencies explicit, stable
    names: every process and every run that uses the same name shares the breaker.
    """

    def __init__(
        self,
        dependencies: Sequence[CheckSpec],
        *,
        repository: BreakerRepository,
        clock: Clock,
        runner: CheckRunner | None = None,
        default_policy: BreakerPolicy | None = None,
        concurrency: int = 8,
    ) -> None:
        duplicates = sorted(name for name, n in Counter(d.name for d in dependencies).items() if n > 1)
        if duplicates:
            raise ConfigError(
                f"dependency names must be unique, repeated: {', '.join(duplicates)}",
                key_path="dependencies",
                hint="give each dependency its own `name:`; the name keys its circuit breaker",
            )
        self.dependencies = tuple(dependencies)
        self._repository = repository
        self._clock = clock
        self._runner = runner or CheckRunner(clock=clock)
        self._default_policy = default_policy or BreakerPolicy()
        self._concurrency = concurrency

    def policy_for(self, dependency: CheckSpec) -> BreakerPolicy:
        """The dependency's own breaker policy, or the default."""
        return dependency.breaker or self._default_policy

    def state(self, name: str) -> BreakerState:
        """The stored breaker state of dependency ``name`` (closed when never stored)."""
        return self._repository.load(name) or BreakerState()

    async def check(self, dependency: CheckSpec) -> CheckResult:
        """Run one dependency's check through its breaker; DependencyUnavailable while it is open."""
        policy = self.policy_for(dependency)
        allowed, state = self._update(dependency.name, lambda s: allow(s, self._clock.now(), policy))
        if not allowed:
            raise _unavailable(dependency.name, state, policy)
        result = await self._runner.run(dependency)
        evidence = "" if result.ok else result.evidence
        self._update(
            dependency.name,
            lambda s: (None, record(s, result.ok, self._clock.now(), policy, evidence=evidence)),
        )
        return result

    async def check_all(self) -> list[CheckResult]:
        """Check every dependency concurrently; a refused one is a failed result with 0 attempts."""
        semaphore = asyncio.Semaphore(self._concurrency)

        async def one(dependency: CheckSpec) -> CheckResult:
            async with semaphore:
                try:
                    return await self.check(dependency)
                except DependencyUnavailable as exc:
                    return CheckResult(
                        name=dependency.name,
                        kind=dependency.kind,
                        ok=False,
                        attempts=0,
                        latency_ms=0.0,
                        evidence=exc.message,
                        started_at=self._clock.now(),
                        required=dependency.required,
                    )

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(d)) for d in self.dependencies]
        return [task.result() for task in tasks]

    async def ensure_available(self) -> list[CheckResult]:
        """check_all, then raise if a required dependency is unavailable; optional ones only report."""
        results = await self.check_all()
        refused = [r for r in results if r.required and not r.ok and r.attempts == 0]
        if refused:
            raise DependencyUnavailable(
                f"{len(refused)} required dependenc{'y is' if len(refused) == 1 else 'ies are'} unavailable",
                check=refused[0].name if len(refused) == 1 else "",
                evidence="\n    ".join(f"{r.name}: {r.evidence}" for r in refused),
                hint="the breaker fails fast until its cool-down ends; fix the dependency, then run again",
            )
        raise_for_failures(results)
        return results

    def _update(
        self, name: str, transition: Callable[[BreakerState], tuple[T, BreakerState]]
    ) -> tuple[T, BreakerState]:
        """Load, transition, compare-and-save; on a conflict, start over from the fresh state.

        Writers that collide back off for a short random time, so that several processes recording at
        once do not keep colliding in lockstep (at most about a second in all).
        """
        for attempt in range(MAX_CONFLICTS):
            current = self._repository.load(name) or BreakerState()
            value, new = transition(current)
            if new == current or self._repository.save(name, new, expected_version=current.version):
                return value, new
            time.sleep(random.uniform(0, min(0.05, 0.002 * (attempt + 1))))
        raise StoreError(f"circuit breaker {name!r}: gave up after {MAX_CONFLICTS} conflicting updates")


def _unavailable(name: str, state: BreakerState, policy: BreakerPolicy) -> DependencyUnavailable:
    if state.status is BreakerStatus.HALF_OPEN:
        message = "circuit half-open: a trial check is already running elsewhere"
        hint = "another Slipway run is testing this dependency; try again shortly"
    else:
        since = _iso(state.opened_at) if state.opened_at is not None else "unknown"
        reopen = retry_at(state, policy)
        message = f"circuit open since {since}"
        hint = f"no check is sent until {_iso(reopen)}; fix the dependency, then run again" if reopen else ""
    return DependencyUnavailable(message, check=name, evidence=state.reason, hint=hint)


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "unknown"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
