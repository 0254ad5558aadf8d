"""Run checks: many at once, each bounded by its timeout and retried with exponential backoff.

Time has two sources on purpose. The injected :class:`~slipway.ports.Clock` stamps results, measures
latency and sleeps between attempts, so tests with a fake clock retry instantly. The timeout of an
attempt is enforced by the event loop in real time, because it bounds real I/O: a fake clock must not
make a hanging connection look timed out, nor keep a real one waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from slipway.checks import probes
from slipway.checks.probes import CommandExecutor, Observation
from slipway.errors import CheckFailed
from slipway.model.checks import (
    CheckKind,
    CheckSpec,
    CommandCheck,
    DnsCheck,
    HttpCheck,
    SqlCheck,
    TcpCheck,
)
from slipway.ports import Clock

#: How many checks run at the same time unless the caller says otherwise.
DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class CheckResult:
    """How one check fared, over all its attempts."""

    name: str
    kind: CheckKind
    ok: bool
    #: How many attempts ran (0 when a breaker refused the check).
    attempts: int
    #: Latency of the last attempt, in milliseconds.
    latency_ms: float
    #: What the last attempt expected and saw.
    evidence: str
    #: Wall-clock time (seconds since the epoch) of the first attempt.
    started_at: float
    required: bool = True

    def summary(self) -> str:
        """One line: ``ok|FAILED name (attempts, latency): evidence``."""
        verdict = "ok" if self.ok else "FAILED"
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return f"{verdict} {self.name} ({tries}, {self.latency_ms:.0f} ms): {self.evidence}"


class CheckRunner:
    """Runs single checks with retries; holds what the attempts share (clock, HTTP client, executor)."""

    def __init__(
        self,
        *,
        clock: Clock,
        command_executor: CommandExecutor | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._clock = clock
        self._executor = command_executor or probes.run_local_command
        self._http_client = http_client

    async def run(self, spec: CheckSpec) -> CheckResult:
        """Attempt ``spec`` up to ``1 + retries`` times, sleeping the backoff between failures."""
        started_at = self._clock.now()
        attempt = 0
        while True:
            attempt += 1
            began = self._clock.monotonic()
            observation = await self._attempt(spec)
            latency_ms = (self._clock.monotonic() - began) * 1000
            if observation.ok or attempt > spec.retries:
                break
            await self._clock.sleep(spec.backoff.delay(attempt))
        return CheckResult(
            name=spec.name,
            kind=spec.kind,
            ok=observation.ok,
            attempts=attempt,
            latency_ms=latency_ms,
            evidence=observation.evidence,
            started_at=started_at,
            required=spec.required,
        )

    async def _attempt(self, spec: CheckSpec) -> Observation:
        try:
            async with asyncio.timeout(spec.timeout):
                return await self._probe(spec)
        except TimeoutError:
            return Observation(False, f"expected an answer within {spec.timeout:g} s, got none")
        except Exception as exc:  # an unexpected library error fails this check, not the whole batch
            return Observation(False, f"unexpected error: {probes.describe_exception(exc)}")

    async def _probe(self, spec: CheckSpec) -> Observation:
        if isinstance(spec, HttpCheck):
            async with self._client() as client:
                return await probes.probe_http(spec, client, self._clock)
        if isinstance(spec, TcpCheck):
            return await probes.probe_tcp(spec, self._clock)
        if isinstance(spec, CommandCheck):
            return await probes.probe_command(spec, self._executor)
        if isinstance(spec, SqlCheck):
            return await probes.probe_sql(spec)
        if isinstance(spec, DnsCheck):
            return await probes.probe_dns(spec)
        raise TypeError(f"unknown check spec {type(spec).__name__}")  # pragma: no cover - union is closed

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http_client is not None:
            yield self._http_client
        else:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                yield client


async def run_checks(
    specs: Sequence[CheckSpec],
    *,
    clock: Clock,
    concurrency: int = DEFAULT_CONCURRENCY,
    command_executor: CommandExecutor | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> list[CheckResult]:
    """Run ``specs`` concurrently (at most ``concurrency`` at once); results come back in spec order."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    semaphore = asyncio.Semaphore(concurrency)
    async with contextlib.AsyncExitStack() as stack:
        if http_client is None and any(isinstance(s, HttpCheck) for s in specs):
            http_client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
        runner = CheckRunner(clock=clock, command_executor=command_executor, http_client=http_client)

        async def bounded(spec: CheckSpec) -> CheckResult:
            async with semaphore:
                return await runner.run(spec)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(bounded(spec)) for spec in specs]
    return [task.result() for task in tasks]


def failed_required(results: Sequence[CheckResult]) -> list[CheckResult]:
    """The results that failed and were required."""
    return [r for r in results if not r.ok and r.required]


def raise_for_failures(results: Sequence[CheckResult]) -> None:
    """Raise one CheckFailed holding the evidence of every required check that failed."""
    failed = failed_required(results)
    if not failed:
        return
    if len(failed) == 1:
        only = failed[0]
        raise CheckFailed(
            f"{only.kind} check failed after {only.attempts} attempt(s)",
            check=only.name,
            evidence=only.evidence,
            hint="fix what the evidence shows, or raise the check's timeout/retries if it is only slow",
        )
    lines = "\n    ".join(f"{r.name}: {r.evidence}" for r in failed)
    raise CheckFailed(
        f"{len(failed)} of {len(results)} checks failed",
        evidence=lines,
        hint="fix what the evidence shows, or raise the checks' timeout/retries if they are only slow",
    )
