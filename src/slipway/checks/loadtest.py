"""A bounded, non-destructive load test: N safe requests at concurrency C, stopped by a hard time limit.

It answers "does the new release still serve this traffic this fast?", not "how much can it take":
the request count and the time limit are capped by validation, only GET/HEAD/OPTIONS are allowed, and
the run stops by itself when either bound is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import httpx

from slipway.checks.probes import describe_exception, safe_url
from slipway.errors import CheckFailed

# The models live in the pure model so that reading slipway.yml does not import httpx; re-exported here.
from slipway.model.checks import LoadTestSpec as LoadTestSpec
from slipway.model.checks import LoadThresholds as LoadThresholds
from slipway.ports import Clock

#: At most this many distinct error messages are kept as evidence.
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LoadTestResult:
    """The figures of one run and the thresholds they broke.

    Every request that was sent counts: one that got no answer (a transport error, its timeout, or
    abandoned in flight at the time limit) is an error, and its time until then enters the latency
    percentiles, so that requests which hang raise the percentiles instead of vanishing from them.
    """

    requested: int
    #: Requests that finished: an HTTP response, a transport error or a timeout (not the abandoned ones).
    completed: int
    errors: int
    duration_s: float
    #: The time limit ended the run before every request finished (abandoned, or never sent).
    stopped_by_time_limit: bool
    #: Latency percentiles over every sent request (abandoned ones: their time in flight); None when none.
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    breaches: tuple[str, ...] = ()
    error_samples: tuple[str, ...] = ()
    #: Requests in flight when the time limit ended the run (counted as errors).
    abandoned: int = 0
    #: Requests that got an HTTP response (whatever its status).
    answered: int = 0

    @property
    def sent(self) -> int:
        """Requests that were sent: finished or abandoned."""
        return self.completed + self.abandoned

    @property
    def not_sent(self) -> int:
        """Requests never sent because the time limit came first."""
        return self.requested - self.sent

    @property
    def error_rate(self) -> float:
        """Errors (transport errors, timeouts, abandoned requests, statuses >= 400) over sent requests."""
        return self.errors / self.sent if self.sent else 0.0

    @property
    def requests_per_second(self) -> float:
        """Finished requests per second of the run."""
        return self.completed / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when no threshold broke."""
        return not self.breaches

    def summary(self) -> str:
        """One line with the figures."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}"

        return (
            f"{self.completed}/{self.requested} requests in {self.duration_s:.2f} s, "
            f"errors {self.error_rate:.1%}, p50 {ms(self.p50_ms)} ms, p95 {ms(self.p95_ms)} ms, "
            f"p99 {ms(self.p99_ms)} ms, max {ms(self.max_ms)} ms"
            + (f" (stopped by the time limit: {self.stop_detail()})" if self.stopped_by_time_limit else "")
        )

    def stop_detail(self) -> str:
        """What the time limit cut off: requests abandoned in flight and requests never sent."""
        return f"{self.abandoned} abandoned in flight, {self.not_sent} never sent"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0 < q <= 100) of non-empty, ascending ``sorted_values``."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


@dataclass
class _Tally:
    next_index: int = 0
    completed: int = 0
    answered: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    #: Requests sent and not finished: index -> (url, when it was sent).
    in_flight: dict[int, tuple[str, float]] = field(default_factory=dict)

    def error(self, message: str) -> None:
        self.errors += 1
        if message not in self.samples and len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(message)

    def abandon(self, now: float) -> int:
        """Count every request still in flight as an error whose latency is its time in flight so far."""
        for url, began in self.in_flight.values():
            self.latencies.append((now - began) * 1000)
            self.error(f"{safe_url(url)}: no answer before the time limit (abandoned)")
        abandoned, self.in_flight = len(self.in_flight), {}
        return abandoned


async def run_load_test(
    spec: LoadTestSpec, *, clock: Clock, http_client: httpx.AsyncClient | None = None
) -> LoadTestResult:
    """Send the requests, stop at the count or the time limit, and judge the figures."""
    tally = _Tally()
    started = clock.monotonic()
    deadline = started + spec.time_limit
    async with contextlib.AsyncExitStack() as stack:
        if http_client is None:
            limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
            http_client = await stack.enter_async_context(httpx.AsyncClient(limits=limits))
        client = http_client

        async def worker() -> None:
            while tally.next_index < spec.requests and clock.monotonic() < deadline:
                index = tally.next_index
                tally.next_index += 1
                await _one_request(spec, client, index, clock, tally)

        with contextlib.suppress(TimeoutError):
            # The real-time bound: the clock's deadline stops new requests, this one stops everything.
            async with asyncio.timeout(spec.time_limit), asyncio.TaskGroup() as group:
                for _ in range(min(spec.concurrency, spec.requests)):
                    group.create_task(worker())
    ended = clock.monotonic()
    abandoned = tally.abandon(ended)
    return _judge(spec, tally, ended - started, abandoned)


async def _one_request(spec: LoadTestSpec, client: httpx.AsyncClient, index: int, clock: Clock, tally: _Tally) -> None:
    url = spec.urls[index % len(spec.urls)]
    began = clock.monotonic()
    tally.in_flight[index] = (url, began)
    try:
        response = await client.request(spec.method, url, headers=spec.headers, timeout=spec.request_timeout)
    except httpx.HTTPError as exc:
        # A timeout or a transport error: an error, and its time enters the percentiles like any other.
        error = f"{safe_url(url)}: {describe_exception(exc)}"
    else:
        tally.answered += 1
        error = f"{safe_url(url)}: HTTP {response.status_code}" if response.status_code >= 400 else ""
    del tally.in_flight[index]  # not reached when the time limit cancels the request: abandon() counts it
    tally.completed += 1
    tally.latencies.append((clock.monotonic() - began) * 1000)
    if error:
        tally.error(error)


def _judge(spec: LoadTestSpec, tally: _Tally, duration: float, abandoned: int) -> LoadTestResult:
    latencies = sorted(tally.latencies)

    def pct(q: float) -> float | None:
        return percentile(latencies, q) if latencies else None

    result = LoadTestResult(
        requested=spec.requests,
        completed=tally.completed,
        errors=tally.errors,
        duration_s=duration,
        stopped_by_time_limit=tally.completed < spec.requests,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        max_ms=latencies[-1] if latencies else None,
        error_samples=tuple(tally.samples),
        abandoned=abandoned,
        answered=tally.answered,
    )
    return _with_breaches(result, spec)


def _with_breaches(result: LoadTestResult, spec: LoadTestSpec) -> LoadTestResult:
    limits = spec.thresholds
    breaches: list[str] = []
    if result.answered == 0:
        breaches.append(f"no request got an answer ({result.errors} of {result.sent} sent failed)")
    if result.stopped_by_time_limit and not spec.allow_partial:
        breaches.append(
            f"stopped by the time limit ({spec.time_limit:g} s) after {result.completed} of {result.requested} "
            f"requests finished ({result.stop_detail()}); set allow_partial: true to judge a partial run"
        )
    for label, value, limit in (
        ("p50", result.p50_ms, limits.p50_ms),
        ("p95", result.p95_ms, limits.p95_ms),
        ("p99", result.p99_ms, limits.p99_ms),
    ):
        if limit is None:
            continue
        if value is None:
            breaches.append(f"{label} latency unknown (no request sent), limit {limit:g} ms")
        elif value > limit:
            breaches.append(f"{label} latency {value:.1f} ms > {limit:g} ms")
    if limits.max_error_rate is not None and result.error_rate > limits.max_error_rate:
        breaches.append(f"error rate {result.error_rate:.1%} > {limits.max_error_rate:.1%}")
    return replace(result, breaches=tuple(breaches))


def raise_for_breaches(result: LoadTestResult, *, name: str = "load test") -> None:
    """Raise CheckFailed with the figures when a threshold broke."""
    if result.breaches:
        raise CheckFailed(
            "; ".join(result.breaches),
            check=name,
            evidence=result.summary() + "".join(f"\n    {sample}" for sample in result.error_samples),
            hint="compare with the previous release's figures; roll back if the new one is slower",
        )
