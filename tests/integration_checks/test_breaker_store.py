"""The SQL breaker repository on SQLite and a real PostgreSQL: compare-and-set, shared by processes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.checks.breaker import BreakerState, BreakerStatus, Outcome
from slipway.checks.guard import DependencyGuard
from slipway.checks.spec import BreakerPolicy, TcpCheck
from slipway.errors import DependencyUnavailable
from slipway.store.breakers import SqlBreakerRepository
from slipway.store.repository import Store
from slipway.testing.fakeclock import FakeClock
from tests.integration_checks.conftest import TcpListener
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


def test_save_is_a_compare_and_set_on_the_version(store_url: str) -> None:
    one, two = Store(store_url), Store(store_url)  # two processes sharing one store
    try:
        a, b = SqlBreakerRepository(one.engine), SqlBreakerRepository(two.engine)
        assert a.load("prod/db") is None
        state = BreakerState(window=(Outcome(1.0, False),))
        assert a.save("prod/db", state, expected_version=0)
        assert not b.save("prod/db", state, expected_version=0)  # the insert lost: somebody stored it first
        seen = b.load("prod/db")
        assert seen is not None and seen.version == 1 and seen.window == state.window
        assert b.save(
            "prod/db", BreakerState(status=BreakerStatus.OPEN, opened_at=5.0, reason="down"), expected_version=1
        )
        assert not a.save("prod/db", BreakerState(), expected_version=1)  # stale: b saved version 2
        stored = a.load("prod/db")
        assert stored is not None and (stored.status, stored.reason, stored.version) == (BreakerStatus.OPEN, "down", 2)
        assert set(a.all()) == {"prod/db"}
    finally:
        one.close()
        two.close()


def test_reset_closes_and_writes_the_audit_log_in_one_go(store_url: str) -> None:
    store = Store(store_url)
    try:
        repo = SqlBreakerRepository(store.engine)
        repo.save(
            "prod/db",
            BreakerState(status=BreakerStatus.OPEN, opened_at=5.0, reason="3 of 3 failed"),
            expected_version=0,
        )
        before = repo.reset("prod/db", actor="alice", detail={"name": "prod/db"})
        assert before is not None and before.status is BreakerStatus.OPEN
        after = repo.load("prod/db")
        assert after is not None and after.status is BreakerStatus.CLOSED and after.window == ()
        [entry] = [e for e in store.audit_log() if e.action == "breaker.reset"]
        assert (entry.actor, entry.subject) == ("alice", "breaker prod/db") and "3 of 3 failed" in entry.detail
        assert repo.reset("prod/other", actor="alice", detail={}) is None
    finally:
        store.close()


def test_concurrent_guards_in_several_stores_lose_no_outcome(store_url: str) -> None:
    """Four 'processes' (own Store, own engine) record 10 outcomes each into one breaker at once."""
    closed = free_port()
    policy = BreakerPolicy(window=100, min_calls=100, failure_rate=1.0)
    dependency = TcpCheck(name="prod/cache", host="127.0.0.1", port=closed, timeout=2, breaker=policy)
    stores = [Store(store_url) for _ in range(4)]
    errors: list[BaseException] = []

    def worker(store: Store) -> None:
        guard = DependencyGuard([dependency], repository=SqlBreakerRepository(store.engine), clock=FakeClock())
        try:
            for _ in range(10):
                asyncio.run(guard.check(dependency))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=45)
        assert not errors, errors
        state = SqlBreakerRepository(stores[0].engine).load("prod/cache")
        assert state is not None and len(state.window) == 40 and state.failures == 40
    finally:
        for s in stores:
            s.close()


def test_the_guard_opens_on_failures_fails_fast_and_a_trial_closes_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    listener = TcpListener()
    clock = FakeClock()
    policy = BreakerPolicy(window=2, min_calls=2, failure_rate=1.0, cool_down=30)
    dependency = TcpCheck(name="prod/cache", host="127.0.0.1", port=listener.port, timeout=2, breaker=policy)
    guard = DependencyGuard([dependency], repository=SqlBreakerRepository(store.engine), clock=clock)
    try:
        assert not asyncio.run(guard.check(dependency)).ok
        assert not asyncio.run(guard.check(dependency)).ok
        with pytest.raises(DependencyUnavailable, match="circuit open since"):
            asyncio.run(guard.check(dependency))
        listener.start()
        clock.advance(31)
        assert asyncio.run(guard.check(dependency)).ok  # the trial after the cool-down
        assert guard.state("prod/cache").status is BreakerStatus.CLOSED
    finally:
        listener.stop()
        store.close()
