"""The dependency guard against a real TCP listener that goes down and comes back."""

from __future__ import annotations

import pytest
from checks_support import TcpListener, run
from tests.support.ports import free_port

from slipway.checks import (
    BreakerStatus,
    CheckRunner,
    CheckSpec,
    DependencyGuard,
    InMemoryBreakerRepository,
    parse_checks,
)
from slipway.checks.runner import CheckResult
from slipway.errors import CheckFailed, ConfigError, DependencyUnavailable
from slipway.testing.fakeclock import FakeClock

pytestmark = pytest.mark.timeout(60)

BREAKER = {"window": 4, "min_calls": 2, "failure_rate": 0.6, "cool_down": 120, "half_open_trials": 1}


def tcp_dependency(port: int, name: str = "orders-db", **extra: object) -> CheckSpec:
    item = {"kind": "tcp", "name": name, "host": "127.0.0.1", "port": port, "breaker": BREAKER, **extra}
    return parse_checks([item], key_path="dependencies")[0]


def test_a_dependency_that_goes_down_opens_its_breaker_then_recovers_after_the_cool_down() -> None:
    clock = FakeClock()
    repo = InMemoryBreakerRepository()

    async def scenario() -> None:
        listener = TcpListener()
        await listener.start()
        dependency = tcp_dependency(listener.port)
        guard = DependencyGuard([dependency], repository=repo, clock=clock)
        try:
            assert (await guard.check(dependency)).ok
            assert listener.connections == 1

            await listener.stop()  # the database goes away
            first = await guard.check(dependency)
            assert not first.ok and "accept a connection" in first.evidence
            assert guard.state("orders-db").status is BreakerStatus.CLOSED  # 1 of 2 failed: below 60%
            second = await guard.check(dependency)
            assert not second.ok
            state = guard.state("orders-db")
            assert state.status is BreakerStatus.OPEN
            opened_at = state.opened_at

            await listener.start()  # it is back, but the breaker does not know yet
            clock.advance(60)
            with pytest.raises(DependencyUnavailable) as caught:
                await guard.check(dependency)
            assert listener.connections == 1  # failed fast: no connection was attempted
            message = str(caught.value)
            assert "circuit open since 2023-11-14T22:13:20+00:00" in message
            assert "2 of the last 3 checks failed" in message and "accept a connection" in message
            assert "2023-11-14T22:15:20+00:00" in caught.value.hint  # when the next trial is allowed

            clock.advance(60)  # cool-down over: one trial goes through, finds the listener, closes
            trial = await guard.check(dependency)
            assert trial.ok
            assert listener.connections == 2
            assert guard.state("orders-db").status is BreakerStatus.CLOSED
            assert opened_at is not None
        finally:
            await listener.stop()

    run(scenario())


def test_a_failed_trial_reopens_the_breaker() -> None:
    clock = FakeClock()
    port = free_port()
    dependency = tcp_dependency(port)
    guard = DependencyGuard([dependency], repository=InMemoryBreakerRepository(), clock=clock)

    async def scenario() -> None:
        for _ in range(2):
            await guard.check(dependency)
        first_open = guard.state("orders-db").opened_at
        clock.advance(120)
        trial = await guard.check(dependency)
        assert not trial.ok
        state = guard.state("orders-db")
        assert state.status is BreakerStatus.OPEN
        assert state.opened_at is not None and first_open is not None and state.opened_at > first_open
        assert state.reason.startswith("trial check failed: expected 127.0.0.1:")

    run(scenario())


def test_processes_sharing_a_repository_share_the_breaker() -> None:
    clock = FakeClock()
    repo = InMemoryBreakerRepository()
    dependency = tcp_dependency(free_port())
    calls = 0

    class CountingRunner(CheckRunner):
        async def run(self, spec: CheckSpec) -> CheckResult:
            nonlocal calls
            calls += 1
            return await super().run(spec)

    first = DependencyGuard([dependency], repository=repo, clock=clock)
    second = DependencyGuard([dependency], repository=repo, clock=clock, runner=CountingRunner(clock=clock))

    async def scenario() -> None:
        for _ in range(2):
            await first.check(dependency)
        with pytest.raises(DependencyUnavailable):
            await second.check(dependency)
        assert calls == 0

    run(scenario())
    stored = repo.load("orders-db")
    assert stored is not None and stored.version == 2  # two saves: one per recorded outcome


def test_check_all_reports_refused_dependencies_and_ensure_available_raises() -> None:
    clock = FakeClock()
    down = tcp_dependency(free_port(), name="cache")
    optional = tcp_dependency(free_port(), name="metrics", required=False)
    guard = DependencyGuard([down, optional], repository=InMemoryBreakerRepository(), clock=clock)

    async def scenario() -> None:
        with pytest.raises(CheckFailed) as failed:
            await guard.ensure_available()  # breaker still closed: an ordinary check failure
        assert not isinstance(failed.value, DependencyUnavailable)
        assert "cache" in str(failed.value) and "metrics" not in str(failed.value)

        await guard.check_all()  # second failure opens both breakers
        results = await guard.check_all()
        assert [(r.name, r.ok, r.attempts) for r in results] == [("cache", False, 0), ("metrics", False, 0)]
        assert "circuit open since" in results[0].evidence

        with pytest.raises(DependencyUnavailable) as unavailable:
            await guard.ensure_available()
        assert unavailable.value.check == "cache"
        assert "metrics" not in str(unavailable.value)

    run(scenario())


def test_optional_dependencies_never_stop_the_run() -> None:
    guard = DependencyGuard(
        [tcp_dependency(free_port(), name="metrics", required=False)],
        repository=InMemoryBreakerRepository(),
        clock=FakeClock(),
    )
    results = run(guard.ensure_available())
    assert [r.ok for r in results] == [False]


def test_dependency_names_must_be_unique() -> None:
    with pytest.raises(ConfigError, match="repeated: db"):
        DependencyGuard(
            [tcp_dependency(1, name="db"), tcp_dependency(2, name="db")],
            repository=InMemoryBreakerRepository(),
            clock=FakeClock(),
        )


def test_a_dependency_without_breaker_settings_uses_the_default_policy() -> None:
    dependency = parse_checks([{"kind": "tcp", "name": "api", "host": "127.0.0.1", "port": free_port()}])[0]
    guard = DependencyGuard([dependency], repository=InMemoryBreakerRepository(), clock=FakeClock())
    assert guard.policy_for(dependency).min_calls == 5
