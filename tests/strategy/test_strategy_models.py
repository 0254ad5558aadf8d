"""Strategy and circuit-breaker models: what slipway.yml may say, and the breaker's arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from slipway.engine.strategy import (
    AllAtOnce,
    BlueGreen,
    Canary,
    CircuitBreakerPolicy,
    OnSuccess,
    Rolling,
    StrategyKind,
    failure_threshold,
    parse_strategy,
    should_trip,
)

pytestmark = pytest.mark.timeout(60)


def test_kind_picks_the_model() -> None:
    assert isinstance(parse_strategy({"kind": "all_at_once"}), AllAtOnce)
    rolling = parse_strategy({"kind": "rolling", "batch_size": "25%", "max_unavailable": 2, "pause": 10})
    assert rolling == Rolling(batch_size="25%", max_unavailable=2, pause=10)
    canary = parse_strategy(
        {"kind": "canary", "canary_hosts": "10%", "bake_time": 300, "check_interval": 30,
         "on_success": "pause", "batch_size": "50%"}
    )
    assert isinstance(canary, Canary) and canary.on_success is OnSuccess.PAUSE
    blue_green = parse_strategy({"kind": "blue_green"})
    assert blue_green == BlueGreen(slots=("blue", "green"), keep_old_warm=True)
    assert blue_green.kind is StrategyKind.BLUE_GREEN


def test_models_are_frozen() -> None:
    strategy = Rolling()
    with pytest.raises(ValidationError, match="frozen"):
        strategy.batch_size = 3


def test_percent_is_normalised_and_digit_strings_are_counts() -> None:
    assert Rolling(batch_size=" 25 %").batch_size == "25%"
    assert Rolling(batch_size="4").batch_size == 4
    assert Rolling(batch_size="12.5%").batch_size == "12.5%"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "at least 1 host"),
        (-2, "at least 1 host"),
        ("0%", "above 0% and at most 100%"),
        ("150%", "above 0% and at most 100%"),
        ("-5%", "percentage like '25%'"),
        ("lots", "percentage like '25%'"),
        ("25", None),
        (2.5, "percentage like '25%'"),
        (True, "percentage like '25%'"),
        (None, "percentage like '25%'"),
    ],
)
def test_bad_batch_size_is_a_clear_validation_error(value: object, message: str | None) -> None:
    if message is None:
        Rolling.model_validate({"batch_size": value})
        return
    with pytest.raises(ValidationError, match=message) as info:
        Rolling.model_validate({"batch_size": value})
    assert info.value.errors()[0]["loc"] == ("batch_size",)


def test_unknown_kind_and_unknown_key_are_refused() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        parse_strategy({"kind": "yolo"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse_strategy({"kind": "rolling", "batchsize": 2})
    with pytest.raises(ValidationError, match="Unable to extract tag"):
        parse_strategy({"batch_size": 2})


def test_canary_check_interval_must_fit_in_bake_time() -> None:
    with pytest.raises(ValidationError, match="never be checked while baking"):
        Canary(bake_time=10, check_interval=30)
    with pytest.raises(ValidationError, match="greater than 0"):
        Canary(check_interval=0)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Canary(bake_time=-1)


def test_blue_green_slots_must_differ() -> None:
    with pytest.raises(ValidationError, match="different names"):
        BlueGreen(slots=("blue", "blue"))
    with pytest.raises(ValidationError, match="letters, digits"):
        BlueGreen(slots=("blue", "gr een"))


def test_negative_pause_is_refused() -> None:
    with pytest.raises(ValidationError, match="pause"):
        Rolling(pause=-1)


# -- circuit breaker --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [(0, 1), (1, 1), (2, 2), (3, 3), (4, 3), (6, 3), (7, 4), (10, 5), (399, 200), (1000, 200)],
)
def test_ecs_default_threshold_is_half_clamped_to_3_and_200(hosts: int, expected: int) -> None:
    assert failure_threshold(CircuitBreakerPolicy(), hosts) == expected


def test_fraction_is_exact_not_floating_point() -> None:
    # 0.1 * 30 is 3.0000000000000004 in floats; ceil would wrongly give 4
    policy = CircuitBreakerPolicy(threshold=0.1, min_threshold=1)
    assert failure_threshold(policy, 30) == 3
    assert failure_threshold(CircuitBreakerPolicy(threshold="10%", min_threshold=1), 30) == 3


def test_count_threshold_is_literal() -> None:
    policy = CircuitBreakerPolicy(threshold=5)
    assert failure_threshold(policy, 100) == 5
    assert failure_threshold(policy, 4) == 4  # never more than the fleet


def test_should_trip_at_the_threshold() -> None:
    policy = CircuitBreakerPolicy()
    assert not should_trip(policy, 10, 4)
    assert should_trip(policy, 10, 5)
    with pytest.raises(ValueError, match="negative"):
        should_trip(policy, 10, -1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 1.5}, "at most 1"),
        ({"threshold": 0.0}, "above 0"),
        ({"threshold": "x"}, "fraction like 0.5|percentage like"),
        ({"threshold": 1}, r"outside \[min_threshold, max_threshold\]"),
        ({"min_threshold": 10, "max_threshold": 5}, "above max_threshold"),
        ({"min_threshold": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_breaker_policy_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CircuitBreakerPolicy.model_validate(kwargs)


policies = st.builds(
    CircuitBreakerPolicy,
    threshold=st.one_of(
        st.floats(min_value=0.001, max_value=1.0),
        st.integers(1, 100).map(lambda p: f"{p}%"),
    ),
    min_threshold=st.integers(1, 10),
    max_threshold=st.integers(10, 300),
    auto_rollback=st.booleans(),
)


@settings(max_examples=500, deadline=None)
@given(policy=policies, hosts=st.integers(0, 2000))
def test_threshold_within_bounds(policy: CircuitBreakerPolicy, hosts: int) -> None:
    threshold = failure_threshold(policy, hosts)
    assert threshold <= policy.max_threshold
    assert min(policy.min_threshold, max(hosts, 1)) <= threshold <= max(hosts, 1)
    assert should_trip(policy, hosts, threshold)
    assert not should_trip(policy, hosts, threshold - 1)


@settings(max_examples=300, deadline=None)
@given(policy=policies, hosts=st.integers(1, 1000))
def test_threshold_grows_with_the_fleet(policy: CircuitBreakerPolicy, hosts: int) -> None:
    assert failure_threshold(policy, hosts) <= failure_threshold(policy, hosts + 1)
