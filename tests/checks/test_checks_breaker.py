"""The breaker state machine: examples, then properties that hold for any sequence of events."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.checks.breaker import (
    BreakerState,
    BreakerStatus,
    InMemoryBreakerRepository,
    Outcome,
    allow,
    prune,
    record,
    retry_at,
)
from slipway.checks.spec import BreakerPolicy
from slipway.errors import StoreError

pytestmark = pytest.mark.timeout(120)

POLICY = BreakerPolicy(window=10, min_calls=4, failure_rate=0.5, cool_down=60, half_open_trials=2)


def feed(state: BreakerState, outcomes: list[bool], *, start: float = 0.0, step: float = 1.0) -> BreakerState:
    for i, ok in enumerate(outcomes):
        state = record(state, ok, start + i * step, POLICY, evidence="" if ok else f"failure {i}")
    return state


def opened(at: float = 100.0) -> BreakerState:
    return replace(BreakerState(), status=BreakerStatus.OPEN, opened_at=at, reason="down")


# --- examples ----------------------------------------------------------------------------------------


def test_opens_when_the_failure_rate_reaches_the_threshold_with_enough_calls() -> None:
    state = feed(BreakerState(), [True, False, True])
    assert state.status is BreakerStatus.CLOSED  # 1 of 3, and fewer than min_calls anyway
    state = feed(state, [False], start=3)
    assert state.status is BreakerStatus.OPEN  # 2 of 4 = 50%
    assert state.opened_at == 3
    assert state.reason == "2 of the last 4 checks failed (threshold 50%); last failure: failure 0"


def test_a_success_after_a_failure_does_not_open_the_breaker() -> None:
    # The reported case: window 4, min_calls 2, rate 0.5; a check failed while the dependency was down,
    # it came back, and the next check passed. "1 of the last 2 checks failed" must not open it.
    policy = BreakerPolicy(window=4, min_calls=2, failure_rate=0.5, cool_down=60)
    state = record(BreakerState(), False, 0.0, policy, evidence="connection refused")
    state = record(state, True, 10.0, policy)
    assert state.status is BreakerStatus.CLOSED
    assert [o.ok for o in state.window] == [False, True]
    assert allow(state, 11.0, policy)[0]
    state = record(state, False, 12.0, policy, evidence="refused again")
    assert state.status is BreakerStatus.OPEN  # 2 of 3: a failure still opens it
    assert state.reason.startswith("2 of the last 3 checks failed")


def test_open_refuses_until_the_cool_down_then_lets_trials_through() -> None:
    state = opened(at=100)
    assert allow(state, 159.9, POLICY) == (False, state)
    assert retry_at(state, POLICY) == 160
    allowed, half = allow(state, 160, POLICY)
    assert allowed and half.status is BreakerStatus.HALF_OPEN and half.trials_started == 1
    allowed, half = allow(half, 160, POLICY)
    assert allowed and half.trials_started == 2
    allowed, refused = allow(half, 161, POLICY)
    assert not allowed and refused == half  # both trials are out; nobody else goes through


def test_half_open_closes_after_all_trials_pass_and_forgets_the_window() -> None:
    _, state = allow(replace(opened(), window=(Outcome(1, False),) * 4), 200, POLICY)
    state = record(state, True, 201, POLICY)
    assert state.status is BreakerStatus.HALF_OPEN and state.trials_passed == 1
    assert record(state, True, 202, POLICY) == state  # no second trial was let through: a late report
    allowed, state = allow(state, 202, POLICY)
    assert allowed
    state = record(state, True, 203, POLICY)
    assert state == BreakerState(version=state.version)


def test_a_failed_trial_reopens_and_restarts_the_cool_down() -> None:
    _, state = allow(opened(at=100), 200, POLICY)
    state = record(state, False, 205, POLICY, evidence="connection refused")
    assert state.status is BreakerStatus.OPEN
    assert state.opened_at == 205
    assert state.reason == "trial check failed: connection refused"
    assert allow(state, 264, POLICY)[0] is False


def test_a_trial_that_never_reports_is_replaced_after_a_cool_down() -> None:
    _, state = allow(opened(at=100), 200, POLICY)
    _, state = allow(state, 200, POLICY)
    assert allow(state, 259, POLICY)[0] is False
    allowed, state = allow(state, 260, POLICY)
    assert allowed and state.trials_started == 1 and state.trials_passed == 0


def test_a_late_outcome_while_open_changes_nothing() -> None:
    state = opened()
    assert record(state, True, 101, POLICY) == state
    assert record(state, False, 101, POLICY) == state


def test_window_keeps_the_newest_outcomes_and_drops_old_ones_by_age() -> None:
    policy = BreakerPolicy(window=3, min_calls=1, failure_rate=1.0, max_age=10)
    window = tuple(Outcome(float(t), True) for t in range(6))
    assert prune(window, 5, policy) == window[-3:]
    assert prune(window, 14, policy) == (Outcome(4, True), Outcome(5, True))


def test_old_failures_do_not_open_the_breaker_when_max_age_applies() -> None:
    policy = BreakerPolicy(window=10, min_calls=3, failure_rate=0.5, max_age=60)
    state = BreakerState()
    for t in (0, 1):
        state = record(state, False, t, policy)
    state = record(state, True, 100, policy)
    state = record(state, False, 101, policy)
    assert state.status is BreakerStatus.CLOSED  # the two old failures aged out: 1 of 2 within 60 s


def test_policy_rejects_min_calls_larger_than_the_window() -> None:
    with pytest.raises(ValueError, match="min_calls"):
        BreakerPolicy(window=3, min_calls=5)


def test_from_dict_rejects_data_it_did_not_write() -> None:
    good = BreakerState().to_dict()
    for bad in ({}, {**good, "schema": 99}, {**good, "status": "melted"}, {**good, "window": [[1.0, "yes"]]}):
        with pytest.raises(StoreError):
            BreakerState.from_dict(bad)


# --- the repository ----------------------------------------------------------------------------------


def test_repository_saves_only_over_the_expected_version() -> None:
    repo = InMemoryBreakerRepository()
    assert repo.load("db") is None
    assert repo.save("db", opened(), expected_version=0)
    stored = repo.load("db")
    assert stored is not None and stored.version == 1 and stored.status is BreakerStatus.OPEN
    assert not repo.save("db", BreakerState(), expected_version=0)  # someone else saved version 1
    assert repo.load("db") == stored
    assert repo.save("db", BreakerState(), expected_version=1)


def test_concurrent_writers_lose_no_update() -> None:
    repo = InMemoryBreakerRepository()
    policy = BreakerPolicy(window=1000, min_calls=1000, failure_rate=1.0)
    writers, each = 8, 50

    def writer() -> None:
        for _ in range(each):
            while True:
                current = repo.load("db") or BreakerState()
                new = record(current, True, 0.0, policy)
                if repo.save("db", new, expected_version=current.version):
                    break

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    final = repo.load("db")
    assert final is not None
    assert len(final.window) == writers * each
    assert final.version == writers * each


# --- properties --------------------------------------------------------------------------------------

policies = st.builds(
    lambda window, min_frac, rate, cool, trials, age: BreakerPolicy(
        window=window,
        min_calls=max(1, round(window * min_frac)),
        failure_rate=rate,
        cool_down=cool,
        half_open_trials=trials,
        max_age=age,
    ),
    st.integers(1, 30),
    st.floats(0, 1),
    st.floats(0.01, 1),
    st.floats(0.5, 1000),
    st.integers(1, 5),
    st.none() | st.floats(1, 10_000),
)
# An event: ("allow", dt) or ("record", dt, ok); dt >= 0 is the time since the previous event.
events = st.lists(
    st.one_of(
        st.tuples(st.just("allow"), st.floats(0, 500)),
        st.tuples(st.just("record"), st.floats(0, 500), st.booleans()),
    ),
    max_size=80,
)


def play(policy: BreakerPolicy, script: list[tuple[object, ...]]) -> list[tuple[BreakerState, float]]:
    """Run a script of events from a fresh breaker; every state with the time it was reached."""
    state, now, seen = BreakerState(), 0.0, []
    for event in script:
        now += float(event[1])  # type: ignore[arg-type]
        if event[0] == "allow":
            _, state = allow(state, now, policy)
        else:
            state = record(state, bool(event[2]), now, policy, evidence="boom")
        seen.append((state, now))
    return seen


def assert_invariants(state: BreakerState, policy: BreakerPolicy) -> None:
    assert len(state.window) <= policy.window
    assert 0 <= state.trials_passed <= state.trials_started <= policy.half_open_trials
    if state.status is BreakerStatus.CLOSED:
        assert state.opened_at is None and state.trials_started == 0
    else:
        assert state.opened_at is not None and state.reason
    if state.status is BreakerStatus.OPEN:
        assert state.trials_started == 0


@settings(max_examples=300, deadline=None)
@given(policies, events)
def test_every_reachable_state_keeps_the_invariants(
    policy: BreakerPolicy, script: list[tuple[object, ...]]
) -> None:
    for state, _ in play(policy, script):
        assert_invariants(state, policy)


@settings(max_examples=300, deadline=None)
@given(policies, st.lists(st.booleans(), max_size=40), st.floats(0, 100))
def test_never_opens_before_min_calls(policy: BreakerPolicy, outcomes: list[bool], step: float) -> None:
    state = BreakerState()
    for i, ok in enumerate(outcomes[: policy.min_calls - 1]):
        state = record(state, ok, i * step, policy)
        assert state.status is BreakerStatus.CLOSED


@settings(max_examples=300, deadline=None)
@given(policies, st.lists(st.booleans(), max_size=60))
def test_opens_exactly_when_the_window_failure_rate_reaches_the_threshold(
    policy: BreakerPolicy, outcomes: list[bool]
) -> None:
    state = BreakerState()
    for i, ok in enumerate(outcomes):
        before = state
        state = record(state, ok, float(i), policy)
        window = prune((*before.window, Outcome(float(i), ok)), float(i), policy)
        failures = sum(1 for o in window if not o.ok)
        should_open = (
            not ok and len(window) >= policy.min_calls and failures / len(window) >= policy.failure_rate
        )
        assert (state.status is BreakerStatus.OPEN) == should_open
        if should_open:
            break


@settings(max_examples=500, deadline=None)
@given(policies, events, st.floats(0, 500))
def test_a_success_never_opens_the_breaker(policy: BreakerPolicy, script: list[tuple[object, ...]], dt: float) -> None:
    # Whatever happened before (any mix of allows, failures and successes), recording a success in a
    # breaker that is not open leaves it not open; and at every step of the script itself, a recorded
    # success never moved the breaker to open.
    state, now = BreakerState(), 0.0
    for event in script:
        now += float(event[1])  # type: ignore[arg-type]
        if event[0] == "allow":
            _, state = allow(state, now, policy)
            continue
        before, ok = state, bool(event[2])
        state = record(state, ok, now, policy, evidence="boom")
        if ok and before.status is not BreakerStatus.OPEN:
            assert state.status is not BreakerStatus.OPEN
    after = record(state, True, now + dt, policy)
    assert after.status is not BreakerStatus.OPEN or state.status is BreakerStatus.OPEN


@settings(max_examples=300, deadline=None)
@given(policies, st.floats(0, 1e9), st.lists(st.floats(0, 1), max_size=20))
def test_open_stays_open_until_the_cool_down(
    policy: BreakerPolicy, opened_at: float, fractions: list[float]
) -> None:
    state = opened(at=opened_at)
    for fraction in fractions:
        now = opened_at + fraction * policy.cool_down
        if now >= opened_at + policy.cool_down:
            continue  # float rounding put it at the boundary
        assert allow(state, now, policy) == (False, state)
    allowed, after = allow(state, opened_at + policy.cool_down, policy)
    assert allowed and after.status is BreakerStatus.HALF_OPEN


@settings(max_examples=300, deadline=None)
@given(policies, st.lists(st.booleans(), min_size=1, max_size=10))
def test_half_open_closes_only_after_the_configured_successful_trials(
    policy: BreakerPolicy, outcomes: list[bool]
) -> None:
    _, state = allow(opened(at=0), policy.cool_down, policy)
    now = policy.cool_down
    for i, ok in enumerate(outcomes):
        if state.status is not BreakerStatus.HALF_OPEN:
            break
        if i > 0:
            allowed, state = allow(state, now, policy)
            assert allowed
        state = record(state, ok, now, policy)
        prefix = outcomes[: i + 1]
        if not ok:
            assert state.status is BreakerStatus.OPEN
        elif len(prefix) >= policy.half_open_trials and all(prefix):
            assert state.status is BreakerStatus.CLOSED
        else:
            assert state.status is BreakerStatus.HALF_OPEN


@settings(max_examples=300, deadline=None)
@given(policies, events, st.integers(0, 10_000))
def test_state_round_trips_through_json(
    policy: BreakerPolicy, script: list[tuple[object, ...]], version: int
) -> None:
    for state, _ in play(policy, script)[-5:] or [(BreakerState(), 0.0)]:
        state = replace(state, version=version)
        assert BreakerState.from_dict(state.to_dict()) == state
        assert BreakerState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
