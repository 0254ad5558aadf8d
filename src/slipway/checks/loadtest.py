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

# The models live in .spec so that reading slipway.yml does not import httpx; re-exported here.
from slipway.checks.spec import LoadTestSpec as LoadTestSpec
from slipway.checks.spec import LoadThresholds as LoadThresholds
from slipway.errors import CheckFailed
from slipway.ports import Clock

#: At most this many distinct error messages are kept as evidence.
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LoadTestResult:
    """The figures of one run and the thresholds they broke."""

    requested: int
    #: Requests that got an answer or a transport error (not the ones abandoned at the time limit).
    completed: int
    errors: int
    duration_s: float
    stopped_by_time_limit: bool
    #: Latency percentiles over requests that got an HTTP response; None when none did.
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    breaches: tuple[str, ...] = ()
    error_samples: tuple[str, ...] = ()

    @property
    def error_rate(self) -> float:
        """Errors (transport errors and statuses >= 400) over completed requests."""
        return self.errors / self.completed if self.completed else 0.0

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second of the run."""
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
            + (" (stopped by the time limit)" if self.stopped_by_time_limit else "")
        )


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
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if message not in self.samples and len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(message)


async def run_load_test(
    spec: LoadTestSpec, *, clock: Clock, http_client: httpx.AsyncClient | None = None
) -> LoadTestResult:
    """Send the requests, stop at the count or the time limit, and judge the figures."""
    tally = _Tally()
    started = clock.monotonic()
    deadline = started + spec.time_limit
    stopped = False
    async with contextlib.AsyncExitStack() as stack:
        if http_client is None:
            limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
            http_client = await stack.enter_async_context(httpx.AsyncClient(limits=limits))
        client = http_client

        async def worker() -> None:
            while tally.next_index < spec.requests and clock.monotonic() < deadline:
                index = tally.next_index
                tally.next_index += 1
                await _one_request(spec, client, spec.urls[index % len(spec.urls)], clock, tally)

        try:
            # The real-time bound: the clock's deadline stops new requests, this one stops everything.
            async with asyncio.timeout(spec.time_limit), asyncio.TaskGroup() as group:
                for _ in range(min(spec.concurrency, spec.requests)):
                    group.create_task(worker())
        except TimeoutError:
            stopped = True
    stopped = stopped or tally.completed < spec.requests
    return _judge(spec, tally, clock.monotonic() - started, stopped)


async def _one_request(spec: LoadTestSpec, client: httpx.AsyncClient, url: str, clock: Clock, tally: _Tally) -> None:
    began = clock.monotonic()
    try:
        response = await client.request(spec.method, url, headers=spec.headers, timeout=spec.request_timeout)
    except httpx.HTTPError as exc:
        tally.completed += 1
        tally.error(f"{safe_url(url)}: {describe_exception(exc)}")
        return
    tally.completed += 1
    tally.latencies.append((clock.monotonic() - began) * 1000)
    if response.status_code >= 400:
        tally.error(f"{safe_url(url)}: HTTP {response.status_code}")


def _judge(spec: LoadTestSpec, tally: _Tally, duration: float, stopped: bool) -> LoadTestResult:
    latencies = sorted(tally.latencies)

    def pct(q: float) -> float | None:
        return percentile(latencies, q) if latencies else None

    result = LoadTestResult(
        requested=spec.requests,
        completed=tally.completed,
        errors=tally.errors,
        duration_s=duration,
        stopped_by_time_limit=stopped,
        p50_ms=pct(50),
        p95_ms=pct(95),
        p99_ms=pct(99),
        max_ms=latencies[-1] if latencies else None,
        error_samples=tuple(tally.samples),
    )
    return _with_breaches(result, spec.thresholds)


def _with_breaches(result: LoadTestResult, limits: LoadThresholds) -> LoadTestResult:
    breaches: list[str] = []
    if result.completed == 0:
        breaches.append("no request completed within the time limit")
    for label, value, limit in (
        ("p50", result.p50_ms, limits.p50_ms),
        ("p95", result.p95_ms, limits.p95_ms),
        ("p99", result.p99_ms, limits.p99_ms),
    ):
        if limit is None:
            continue
        if value is None:
            breaches.append(f"{label} latency unknown (no responses), limit {limit:g} ms")
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
