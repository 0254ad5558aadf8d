"""The bounded load test against the loopback HTTP server."""

from __future__ import annotations

import time

import pytest
from checks_support import HttpServer, run
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from slipway.checks import LoadTestSpec, LoadThresholds, raise_for_breaches, run_load_test
from slipway.checks.loadtest import percentile
from slipway.clock import SystemClock
from slipway.errors import CheckFailed

pytestmark = pytest.mark.timeout(60)


def test_figures_of_a_healthy_run(http_server: HttpServer) -> None:
    spec = LoadTestSpec(
        urls=(http_server.url("/health"), http_server.url("/slow?ms=5")),
        requests=60,
        concurrency=6,
        time_limit=20,
        thresholds=LoadThresholds(p95_ms=5000, max_error_rate=0.0),
    )
    result = run(run_load_test(spec, clock=SystemClock()))
    assert result.ok, result.breaches
    assert (result.requested, result.completed, result.errors) == (60, 60, 0)
    assert not result.stopped_by_time_limit
    assert result.p50_ms is not None and result.p95_ms is not None and result.p99_ms is not None
    assert result.max_ms is not None
    assert 0 < result.p50_ms <= result.p95_ms <= result.p99_ms <= result.max_ms
    assert result.p95_ms >= 5  # half the requests went to the 5 ms route
    assert result.requests_per_second > 0
    assert "60/60 requests" in result.summary()
    raise_for_breaches(result)


def test_latency_threshold_breach(http_server: HttpServer) -> None:
    spec = LoadTestSpec(
        urls=(http_server.url("/slow?ms=30"),),
        requests=10,
        concurrency=5,
        thresholds=LoadThresholds(p95_ms=10),
    )
    result = run(run_load_test(spec, clock=SystemClock()))
    assert not result.ok
    assert len(result.breaches) == 1 and result.breaches[0].startswith("p95 latency ")
    assert result.breaches[0].endswith("ms > 10 ms")
    with pytest.raises(CheckFailed) as caught:
        raise_for_breaches(result, name="checkout latency")
    assert caught.value.check == "checkout latency"
    assert "10/10 requests" in caught.value.evidence


def test_error_rate_breach_keeps_samples(http_server: HttpServer) -> None:
    spec = LoadTestSpec(
        urls=(http_server.url("/health"), http_server.url("/status/500")),
        requests=20,
        concurrency=4,
        thresholds=LoadThresholds(max_error_rate=0.1),
    )
    result = run(run_load_test(spec, clock=SystemClock()))
    assert result.errors == 10 and result.error_rate == 0.5
    assert result.breaches == ("error rate 50.0% > 10.0%",)
    assert result.error_samples == (f"{http_server.url('/status/500')}: HTTP 500",)


def test_the_time_limit_stops_the_run(http_server: HttpServer) -> None:
    spec = LoadTestSpec(urls=(http_server.url("/slow?ms=100"),), requests=1000, concurrency=2, time_limit=0.5)
    began = time.monotonic()
    result = run(run_load_test(spec, clock=SystemClock()))
    assert time.monotonic() - began < 3
    assert result.stopped_by_time_limit
    assert 0 < result.completed < 20
    assert "stopped by the time limit" in result.summary()


def test_the_hard_limit_holds_even_when_the_clock_does_not_move(http_server: HttpServer) -> None:
    from slipway.testing.fakeclock import FakeClock

    spec = LoadTestSpec(urls=(http_server.url("/slow?ms=100"),), requests=1000, concurrency=2, time_limit=0.4)
    began = time.monotonic()
    result = run(run_load_test(spec, clock=FakeClock()))
    assert time.monotonic() - began < 3
    assert result.stopped_by_time_limit


def test_unreachable_targets_are_all_errors(closed_port: int) -> None:
    spec = LoadTestSpec(
        urls=(f"http://127.0.0.1:{closed_port}/",),
        requests=5,
        concurrency=2,
        thresholds=LoadThresholds(p99_ms=10_000),
    )
    result = run(run_load_test(spec, clock=SystemClock()))
    assert result.errors == 5 and result.completed == 5 and result.answered == 0
    assert result.p50_ms is not None  # a refused connection took time too: it is in the percentiles
    assert result.breaches == ("no request got an answer (5 of 5 sent failed)",)
    assert "ConnectError" in result.error_samples[0]


def test_requests_that_hang_until_the_time_limit_are_errors_and_fail_the_test(http_server: HttpServer) -> None:
    # The reported case: one URL never answers. Every worker ends up waiting on it, the time limit stops
    # the run, and it said "30 of 300 completed; errors: 0 (0.0%); every threshold held".
    spec = LoadTestSpec(
        urls=(http_server.url("/health"), http_server.url("/hang")),
        requests=300,
        concurrency=10,
        time_limit=1.5,
        request_timeout=30,
    )
    began = time.monotonic()
    result = run(run_load_test(spec, clock=SystemClock()))
    assert time.monotonic() - began < 10
    assert result.stopped_by_time_limit and result.abandoned == 10
    assert result.errors == 10 and result.error_rate == 10 / result.sent
    assert result.not_sent == 300 - result.sent > 0
    assert result.p99_ms is not None and result.p99_ms >= 1000  # abandoned after 1.5 s in flight
    assert not result.ok
    assert any(b.startswith("stopped by the time limit (1.5 s) after ") for b in result.breaches)
    assert "set allow_partial: true" in result.breaches[0]
    assert any("no answer before the time limit (abandoned)" in e for e in result.error_samples)
    with pytest.raises(CheckFailed):
        raise_for_breaches(result)


def test_timed_out_requests_are_errors_and_their_timeout_enters_the_percentiles(http_server: HttpServer) -> None:
    # 50 of 100 requests time out at 1 s: p95 used to be the fast half's 48 ms.
    spec = LoadTestSpec(
        urls=(http_server.url("/health"), http_server.url("/hang")),
        requests=100,
        concurrency=50,
        time_limit=30,
        request_timeout=1,
        thresholds=LoadThresholds(p95_ms=500),
    )
    result = run(run_load_test(spec, clock=SystemClock()))
    assert not result.stopped_by_time_limit and result.abandoned == 0
    assert (result.completed, result.answered, result.errors) == (100, 50, 50)
    assert result.error_rate == 0.5
    assert result.p95_ms is not None and result.p95_ms >= 1000
    assert result.p50_ms is not None and result.p50_ms < 1000
    assert len(result.breaches) == 1 and result.breaches[0].startswith("p95 latency ")
    assert any("Timeout" in e for e in result.error_samples), result.error_samples


def test_allow_partial_judges_a_run_the_time_limit_stopped(http_server: HttpServer) -> None:
    base = {"urls": (http_server.url("/slow?ms=50"),), "requests": 1000, "concurrency": 2, "time_limit": 0.5}
    stopped = run(run_load_test(LoadTestSpec.model_validate(base), clock=SystemClock()))
    assert stopped.stopped_by_time_limit and not stopped.ok
    partial = run(run_load_test(LoadTestSpec.model_validate({**base, "allow_partial": True}), clock=SystemClock()))
    assert partial.stopped_by_time_limit and partial.ok, partial.breaches
    assert partial.errors == partial.abandoned <= 2  # the requests in flight at the limit are still errors


@pytest.mark.parametrize(
    "change",
    [{"method": "POST"}, {"requests": 100_001}, {"concurrency": 0}, {"time_limit": 601}, {"urls": ()}],
)
def test_the_spec_keeps_the_test_bounded_and_safe(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LoadTestSpec.model_validate({"urls": ["http://127.0.0.1:1/"], **change})


def test_percentile_uses_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([7.0], 50) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200))
def test_percentiles_are_ordered_members(values: list[float]) -> None:
    ordered = sorted(values)
    p50, p95, p99 = (percentile(ordered, q) for q in (50, 95, 99))
    assert ordered[0] <= p50 <= p95 <= p99 <= ordered[-1]
    assert {p50, p95, p99} <= set(values)
