"""The planner's batch arithmetic: examples pinned by name, then properties over any fleet and strategy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipway.engine.strategy import (
    AllAtOnce,
    Batch,
    BatchKind,
    BlueGreen,
    Canary,
    OnSuccess,
    Rolling,
    batch_size,
    canary_size,
    max_unavailable,
    plan_batches,
)
from slipway.errors import ConfigError

pytestmark = pytest.mark.timeout(60)

HOSTS10 = [f"web{i}" for i in range(10)]


def sizes(batches: tuple[Batch, ...]) -> list[int]:
    return [len(b.hosts) for b in batches]


def test_all_at_once_is_one_batch_of_kind_all() -> None:
    (batch,) = plan_batches(HOSTS10, AllAtOnce())
    assert batch == Batch(index=0, kind=BatchKind.ALL, hosts=tuple(HOSTS10))


def test_blue_green_deploys_the_idle_slot_in_one_batch() -> None:
    (batch,) = plan_batches(HOSTS10, BlueGreen())
    assert batch.kind is BatchKind.ALL and batch.hosts == tuple(HOSTS10)


def test_rolling_percent_batch_size_rounds_up() -> None:
    # 25% of 10 = 2.5 -> 3 per batch
    assert sizes(plan_batches(HOSTS10, Rolling(batch_size="25%"))) == [3, 3, 3, 1]


def test_rolling_percent_batch_size_is_at_least_one() -> None:
    assert sizes(plan_batches(HOSTS10[:3], Rolling(batch_size="1%"))) == [1, 1, 1]


def test_max_unavailable_rounds_down_and_caps_the_batch() -> None:
    # batch 5, but at most floor(35% of 10) = 3 out at once
    plan = plan_batches(HOSTS10, Rolling(batch_size=5, max_unavailable="35%"))
    assert sizes(plan) == [3, 3, 3, 1]


def test_max_unavailable_percent_that_rounds_to_zero_still_allows_one() -> None:
    assert max_unavailable(Rolling(max_unavailable="10%"), 5) == 1
    assert sizes(plan_batches(HOSTS10[:5], Rolling(batch_size=4, max_unavailable="10%"))) == [1] * 5


def test_pause_after_every_batch_but_the_last() -> None:
    plan = plan_batches(HOSTS10[:5], Rolling(batch_size=2, pause=30))
    assert [b.pause_after for b in plan] == [30, 30, 0]
    assert [b.index for b in plan] == [0, 1, 2]


def test_canary_first_then_rolling_rest() -> None:
    strategy = Canary(canary_hosts="10%", bake_time=120, check_interval=15, batch_size="30%", pause=5)
    plan = plan_batches(HOSTS10, strategy)
    assert plan[0] == Batch(
        index=0, kind=BatchKind.CANARY, hosts=("web0",), bake_time=120, check_interval=15
    )
    assert sizes(plan) == [1, 3, 3, 3]
    assert [b.kind for b in plan[1:]] == [BatchKind.BATCH] * 3
    assert [b.pause_after for b in plan[1:]] == [5, 5, 0]


def test_canary_on_success_pause_waits_for_approval() -> None:
    plan = plan_batches(HOSTS10, Canary(on_success=OnSuccess.PAUSE, bake_time=60))
    assert plan[0].wait_for_approval
    assert not any(b.wait_for_approval for b in plan[1:])


def test_canary_is_capped_by_max_unavailable() -> None:
    strategy = Canary(canary_hosts="50%", max_unavailable=2, bake_time=0)
    assert canary_size(strategy, 10) == 2


def test_single_host_canary_has_no_rest() -> None:
    plan = plan_batches(["only"], Canary(canary_hosts="25%"))
    assert [(b.kind, b.hosts) for b in plan] == [(BatchKind.CANARY, ("only",))]


def test_no_hosts_no_batches() -> None:
    assert plan_batches([], Rolling(batch_size="50%")) == ()


def test_a_host_listed_twice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'a' is listed twice"):
        plan_batches(["a", "b", "a"], Rolling())


def test_a_single_string_is_not_a_host_list() -> None:
    with pytest.raises(TypeError):
        plan_batches("web1", Rolling())


# -- properties -------------------------------------------------------------------------------------

host_names = st.text(alphabet="abcdefghij0123456789.-", min_size=1, max_size=8)
host_lists = st.lists(host_names, unique=True, max_size=60)
shares = st.one_of(
    st.integers(min_value=1, max_value=80),
    st.integers(min_value=1, max_value=100).map(lambda p: f"{p}%"),
)
rolling = st.builds(
    Rolling, batch_size=shares, max_unavailable=st.none() | shares, pause=st.floats(0, 600)
)
canary = st.builds(
    Canary,
    canary_hosts=shares,
    bake_time=st.just(600.0),
    check_interval=st.floats(0.1, 600),
    on_success=st.sampled_from(OnSuccess),
    batch_size=shares,
    max_unavailable=st.none() | shares,
    pause=st.floats(0, 600),
)
any_strategy = st.one_of(rolling, canary, st.just(AllAtOnce()), st.just(BlueGreen()))


@settings(max_examples=400, deadline=None)
@given(hosts=host_lists, strategy=any_strategy)
def test_every_host_exactly_once_in_order(hosts: list[str], strategy: Rolling | Canary) -> None:
    plan = plan_batches(hosts, strategy)
    assert [h for b in plan for h in b.hosts] == hosts
    assert all(b.hosts for b in plan), "no empty batch"
    assert [b.index for b in plan] == list(range(len(plan)))
    if plan:
        assert plan[-1].pause_after == 0


@settings(max_examples=400, deadline=None)
@given(hosts=host_lists, strategy=st.one_of(rolling, canary))
def test_never_more_out_than_max_unavailable(hosts: list[str], strategy: Rolling | Canary) -> None:
    limit = max_unavailable(strategy, len(hosts))
    for batch in plan_batches(hosts, strategy):
        assert len(batch.hosts) <= limit
    if strategy.max_unavailable is not None and isinstance(strategy.max_unavailable, str) and hosts:
        share = float(strategy.max_unavailable.rstrip("%"))
        assert limit == max(1, math.floor(share * len(hosts) / 100 + 1e-9))


@settings(max_examples=400, deadline=None)
@given(hosts=host_lists, strategy=st.one_of(rolling, canary))
def test_batches_are_full_except_the_last(hosts: list[str], strategy: Rolling | Canary) -> None:
    plan = [b for b in plan_batches(hosts, strategy) if b.kind is BatchKind.BATCH]
    size = batch_size(strategy, len(hosts))
    wanted = strategy.batch_size
    if isinstance(wanted, int):
        assert size == min(wanted, max_unavailable(strategy, len(hosts)))
    for batch in plan[:-1]:
        assert len(batch.hosts) == size
    if plan:
        assert 1 <= len(plan[-1].hosts) <= size


@settings(max_examples=400, deadline=None)
@given(hosts=host_lists.filter(bool), strategy=canary)
def test_canary_batch_comes_first_with_its_size(hosts: list[str], strategy: Canary) -> None:
    plan = plan_batches(hosts, strategy)
    n = len(hosts)
    share = strategy.canary_hosts
    wanted = share if isinstance(share, int) else max(1, math.ceil(float(share.rstrip("%")) * n / 100 - 1e-9))
    assert plan[0].kind is BatchKind.CANARY
    assert plan[0].hosts == tuple(hosts[: min(wanted, max_unavailable(strategy, n), n)])
    assert plan[0].bake_time == strategy.bake_time
    assert [b.kind for b in plan].count(BatchKind.CANARY) == 1
