"""slipway.yml's checks at work: verify checks per host, smoke checks, dependencies, load-test stages.

The checks library (:mod:`slipway.checks`) runs checks; this module decides which run when, renders
their templates, records every check as a step of its stage (``check: <name>``, with attempts, latency
and evidence in the log) and streams it through the observer. The engine only sees two callables
(:attr:`~slipway.engine.deploy.DeploymentRun.verify_host` and ``verify_environment``) and the policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from slipway.checks.breaker import BreakerRepository
from slipway.checks.guard import DependencyGuard
from slipway.checks.loadtest import LoadTestResult, raise_for_breaches, run_load_test
from slipway.checks.runner import CheckResult, CheckRunner, raise_for_failures
from slipway.clock import SystemClock
from slipway.config import LoadedConfig, Loc
from slipway.engine.events import Observer
from slipway.engine.masking import Masker
from slipway.engine.planner import HostInfo, ReleaseInfo, template_context
from slipway.engine.template import render
from slipway.errors import CheckFailed, ConfigError, DependencyUnavailable
from slipway.model.checks import CheckSpec, LoadTestSpec, OpenAfterSwitch, parse_checks
from slipway.model.records import StageRecord
from slipway.model.states import State
from slipway.ports import Clock, Target
from slipway.services import notifications
from slipway.store.breakers import SqlBreakerRepository
from slipway.targets import release as layout

#: How many checks of one host (or of the environment) run at the same time.
CONCURRENCY = 8
Execute = Callable[[CheckSpec], Awaitable[CheckResult]]


# --- templates -------------------------------------------------------------------------------------


def environment_context(loaded: LoadedConfig, environment: str, release: ReleaseInfo | None) -> dict[str, Any]:
    """Template variables of environment-level checks: project, environment, vars, release, commit."""
    from slipway.services.releases import environment_url

    env = loaded.project.environments[environment]
    context: dict[str, Any] = {
        "project": loaded.project.name,
        "environment": {"name": environment, "url": environment_url(loaded.project, environment) or ""},
        "vars": dict(env.vars),
    }
    if release is not None:
        context["commit"] = release.commit
        context["release"] = {
            "id": release.id,
            "digest": release.digest,
            "commit": release.commit,
            "version": release.commit[:12],
        }
        context["artifact"] = {"digest": release.digest, "commit": release.built_by}
    return context


def host_context(loaded: LoadedConfig, environment: str, release: ReleaseInfo, host: HostInfo) -> dict[str, Any]:
    """Template variables of a host's verify checks: the same as its hooks'."""
    from slipway.services.releases import environment_url

    project = loaded.project
    return template_context(
        project=project,
        environment=environment,
        env=project.environments[environment],
        host=host,
        release=release,
        url=environment_url(project, environment),
    )


def render_checks(
    loaded: LoadedConfig, specs: Sequence[CheckSpec], context: Mapping[str, Any], loc: Loc
) -> tuple[CheckSpec, ...]:
    """Render every string of ``specs`` and validate the result again (URLs, addresses, regexes).

    Names that were derived from a templated value are derived again from the rendered one. The ``run``
    of a command check is shell-quoted like a hook; every other value is rendered as plain text.
    """
    rendered: list[CheckSpec] = []
    for i, spec in enumerate(specs):
        where = (*loc, i)
        data = spec.model_dump(mode="json", exclude_unset=True)
        try:
            data = {
                key: _render_value(value, context, where=(*where, key), shell=key == "run")
                for key, value in data.items()
            }
            rendered.append(parse_checks([data], key_path=_dotted(where))[0])
        except ConfigError as exc:
            raise loaded.error(exc.reason, where, hint=exc.hint) from None
    return tuple(rendered)


def _render_value(value: Any, context: Mapping[str, Any], *, where: Loc, shell: bool) -> Any:
    if isinstance(value, str):
        return render(value, context, shell=shell, where=_dotted(where))
    if isinstance(value, dict):
        return {k: _render_value(v, context, where=(*where, k), shell=False) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context, where=(*where, i), shell=False) for i, v in enumerate(value)]
    return value


def _dotted(loc: Loc) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def breaker_name(environment: str, dependency: str) -> str:
    """The key of a dependency's breaker: ``<environment>/<name>`` (environments do not share one)."""
    return f"{environment}/{dependency}"


# --- recording -------------------------------------------------------------------------------------


@dataclass
class CheckRecorder:
    """Runs checks as recorded steps of a stage, streamed through the observer."""

    store: Any
    stage_id: int
    observer: Observer
    masker: Masker

    async def run(self, spec: CheckSpec, host: str, execute: Execute) -> CheckResult:
        """Run one check as the step ``check: <name>`` on ``host``; a refused dependency is a failed step."""
        label = self.masker(f"check: {spec.name}")
        step_id = self.store.start_step(self.stage_id, name=label, host=host, command=self.masker(spec.describe()))
        self.observer.step_started(host, label)
        started = time.monotonic()
        try:
            result = await execute(spec)
        except DependencyUnavailable as exc:
            self._finish(step_id, host, label, State.FAILED, [self.masker(str(exc)), exc.hint], started)
            raise
        except asyncio.CancelledError:
            self._finish(step_id, host, label, State.CANCELLED, [], started)
            raise
        state = State.SUCCEEDED if result.ok else State.FAILED
        self._finish(step_id, host, label, state, result_lines(result, self.masker), started)
        return result

    async def run_all(self, specs: Sequence[CheckSpec], host: str, execute: Execute) -> list[CheckResult]:
        """Run ``specs`` concurrently (bounded); results in spec order."""
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(spec: CheckSpec) -> CheckResult:
            async with limit:
                return await self.run(spec, host, execute)

        return list(await asyncio.gather(*(one(s) for s in specs)))

    def _finish(self, step_id: int, host: str, label: str, state: State, lines: list[str], started: float) -> None:
        lines = [line for line in lines if line]
        self.store.finish_step(step_id, state, exit_code=None, log="\n".join(lines))
        for line in lines:
            self.observer.output(host, "stdout" if state is State.SUCCEEDED else "stderr", line)
        self.observer.step_finished(host, label, state, None, time.monotonic() - started)


def result_lines(result: CheckResult, masker: Masker) -> list[str]:
    """What a check step's log holds: verdict, attempts, latency, and the evidence."""
    verdict = "passed" if result.ok else ("failed" if result.required else "failed (optional: not blocking)")
    return [
        f"{result.kind} check {verdict} after {result.attempts} attempt(s), last latency {result.latency_ms:.0f} ms",
        masker(result.evidence),
    ]


# --- dependencies ----------------------------------------------------------------------------------


@dataclass
class Dependencies:
    """An environment's dependencies behind their shared circuit breakers."""

    environment: str
    specs: tuple[CheckSpec, ...]
    repository: BreakerRepository
    clock: Clock

    async def check(self, recorder: CheckRecorder, *, after_switch: bool = False) -> list[CheckResult]:
        """Check every dependency through its breaker; raise when a required one is refused or fails.

        ``after_switch``: the hosts run the new release. A required dependency refused by its open
        breaker then follows its ``breaker.open_after_switch``: ``revert`` raises DependencyUnavailable
        (a failed check), ``ignore`` is a non-blocking failed step, ``fail`` raises ReleaseKept, which
        the engine does not see as a failed check: the release stays.
        """
        keyed = {s.name: s.model_copy(update={"name": breaker_name(self.environment, s.name)}) for s in self.specs}
        guard = DependencyGuard(tuple(keyed.values()), repository=self.repository, clock=self.clock)
        refused: list[DependencyUnavailable] = []
        kept: list[DependencyUnavailable] = []

        async def execute(spec: CheckSpec) -> CheckResult:
            try:
                return await guard.check(keyed[spec.name])
            except DependencyUnavailable as exc:
                policy = guard.policy_for(spec).open_after_switch if after_switch else None
                if spec.required and policy is not OpenAfterSwitch.IGNORE:
                    (kept if policy is OpenAfterSwitch.FAIL else refused).append(exc)
                    raise
                note = " (breaker open after the switch; open_after_switch: ignore)" if spec.required else ""
                return CheckResult(spec.name, spec.kind, False, 0, 0.0, exc.message + note, self.clock.now(), False)

        async def one(spec: CheckSpec) -> CheckResult | None:
            try:
                return await recorder.run(spec, self.environment, execute)
            except DependencyUnavailable:
                return None

        results = await asyncio.gather(*(one(s) for s in self.specs))
        if refused:
            raise _refused(refused, after_switch=after_switch)
        done = [r for r in results if r is not None]
        raise_for_failures(done)
        if kept:
            raise ReleaseKept(self.environment, kept)
        return done


class ReleaseKept(Exception):
    """Required dependencies were refused by open breakers after the switch, with ``open_after_switch: fail``.

    Not a SlipwayError on purpose: it must pass through the engine, which would treat a CheckFailed as
    evidence against the release. DeploymentChecks keeps it and raises :meth:`error` once the deployment
    is recorded as succeeded.
    """

    def __init__(self, environment: str, refused: Sequence[DependencyUnavailable]) -> None:
        super().__init__(environment)
        self.environment = environment
        self.refused = tuple(refused)

    def error(self, release: str) -> DependencyUnavailable:
        """The error the run ends with: what is unavailable, and that the release stays."""
        names = ", ".join(repr(e.check.split("/", 1)[-1]) for e in self.refused)
        many = len(self.refused) > 1
        return DependencyUnavailable(
            f"dependenc{'ies' if many else 'y'} {names} of {self.environment} {'are' if many else 'is'} unavailable: "
            f"{'their circuit breakers are' if many else 'its circuit breaker is'} open. This says nothing about "
            f"release {release}: it passed its checks and stays on every host (breaker.open_after_switch: fail)",
            evidence="\n    ".join(str(e) for e in self.refused),
            hint="fix the dependency; 'slipway breakers' shows when its breaker lets a check through. "
            f"To go back anyway: 'slipway rollback {self.environment} --reason TEXT'",
        )


def _refused(errors: Sequence[DependencyUnavailable], *, after_switch: bool = False) -> DependencyUnavailable:
    touched = "their breakers say so (open_after_switch: revert)" if after_switch else "no host was touched"
    if len(errors) == 1:
        only = errors[0]
        only.hint = (only.hint + "; " if only.hint else "") + (
            f"{touched}. 'slipway breakers' lists every breaker; "
            "'slipway breakers reset NAME' closes one once you know the service is back"
        )
        return only
    return DependencyUnavailable(
        f"{len(errors)} required dependencies are unavailable; {touched}",
        evidence="\n    ".join(str(e) for e in errors),
        hint="'slipway breakers' lists every breaker and when it lets the next check through",
    )


def dependencies_of(
    app: Any, loaded: LoadedConfig, environment: str, release: ReleaseInfo | None, *, skip: bool = False
) -> Dependencies:
    """The rendered dependencies of ``environment`` with the store's shared breakers (none with ``skip``)."""
    env = loaded.project.environments[environment]
    context = environment_context(loaded, environment, release)
    specs = render_checks(loaded, env.dependencies, context, ("environments", environment, "dependencies"))
    specs = () if skip else specs
    breakers = notifications.watch_breakers(app, loaded, environment, SqlBreakerRepository(app.store.engine))
    return Dependencies(environment, specs, breakers, SystemClock())


# --- a deployment's checks -------------------------------------------------------------------------


@dataclass
class DeploymentChecks:
    """Everything one deployment checks, rendered before any host is touched."""

    recorder: CheckRecorder
    per_host: Mapping[str, tuple[CheckSpec, ...]]
    smoke: tuple[CheckSpec, ...]
    dependencies: Dependencies
    release: ReleaseInfo
    environment: str
    env: Mapping[str, str]
    halt: bool
    #: Dependencies refused after the switch with ``open_after_switch: fail``: raised by raise_kept().
    kept: ReleaseKept | None = None

    async def before(self) -> None:
        """The dependencies, before any host is touched: an open breaker fails fast."""
        if self.dependencies.specs:
            self.recorder.observer.message(f"checking the dependencies of {self.environment} before deploying")
            await self.dependencies.check(self.recorder)

    async def verify_host(self, target: Target) -> None:
        """The verify checks of one host; command checks run on the host, in the new release."""
        specs = self.per_host.get(target.name, ())
        if not specs:
            return
        cwd = layout.release_dir(target, self.release.id)

        async def on_host(command: str, timeout: float) -> tuple[int, str]:
            result = await target.run(command, cwd=cwd, env={**self.env, "SLIPWAY_HOST": target.name}, timeout=timeout)
            return result.exit_code, result.stdout + result.stderr

        runner = CheckRunner(clock=self.dependencies.clock, command_executor=on_host)
        results = await self.recorder.run_all(specs, target.name, runner.run)
        raise_for_failures(results)

    async def verify_environment(self) -> None:
        """Smoke checks, then the dependencies again, once every host is on."""
        runner = CheckRunner(clock=self.dependencies.clock)
        smoke = await self.recorder.run_all(self.smoke, self.environment, runner.run)
        raise_for_failures(smoke)
        try:
            await self.dependencies.check(self.recorder, after_switch=True)
        except ReleaseKept as kept:
            self.kept = kept
            names = ", ".join(e.check.split("/", 1)[-1] for e in kept.refused)
            self.recorder.observer.message(
                f"warning: {names}: circuit breaker open after the switch; release {self.release.id} stays "
                "(breaker.open_after_switch: fail)"
            )

    def raise_kept(self) -> None:
        """After the deployment was recorded: fail the run when a dependency was refused after the switch."""
        if self.kept is not None:
            raise self.kept.error(self.release.id)

    @property
    def has_environment_checks(self) -> bool:
        """Whether there is anything to check after the deployment."""
        return bool(self.smoke or self.dependencies.specs)


def deployment_checks(
    app: Any,
    loaded: LoadedConfig,
    *,
    environment: str,
    release: ReleaseInfo,
    hosts: Sequence[HostInfo],
    stage_id: int,
    secrets: Mapping[str, str],
    rollback: bool = False,
) -> DeploymentChecks:
    """Render the deployment's checks (a template error stops it here, before any host is touched).

    A rollback is the way out of an incident, so it never waits for a dependency: only its verify and
    smoke checks run.
    """
    project = loaded.project
    per_host = {
        h.name: render_checks(
            loaded, project.deploy.checks, host_context(loaded, environment, release, h), ("deploy", "checks")
        )
        for h in hosts
    }
    context = environment_context(loaded, environment, release)
    config = project.environments[environment]
    smoke = render_checks(loaded, config.smoke, context, ("environments", environment, "smoke"))
    return DeploymentChecks(
        recorder=CheckRecorder(app.store, stage_id, app.observer, app.masker),
        per_host=per_host,
        smoke=smoke,
        dependencies=dependencies_of(app, loaded, environment, release, skip=rollback),
        release=release,
        environment=environment,
        env={
            **secrets,
            "SLIPWAY_ENVIRONMENT": environment,
            "SLIPWAY_RELEASE_ID": release.id,
            "SLIPWAY_COMMIT": release.commit,
            "SLIPWAY_DIGEST": release.digest,
        },
        halt=config.on_failure.value == "halt",
    )


# --- the load-test stage ---------------------------------------------------------------------------


def render_load_test(loaded: LoadedConfig, stage_name: str, commit: str) -> LoadTestSpec:
    """The stage's load test with its URLs and headers rendered for its environment."""
    project = loaded.project
    index = next(i for i, s in enumerate(project.pipeline) if s.name == stage_name)
    stage = project.pipeline[index]
    assert stage.load_test is not None and stage.environment is not None
    context = environment_context(loaded, stage.environment, None) | {"commit": commit}
    loc: Loc = ("pipeline", index, "load_test")
    data = stage.load_test.model_dump(mode="json", exclude_unset=True)
    for key in ("urls", "headers"):
        if key in data:
            data[key] = _render_value(data[key], context, where=(*loc, key), shell=False)
    try:
        return LoadTestSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = (*loc, *(p for p in first["loc"] if isinstance(p, str | int)))
        raise loaded.error(str(first["msg"]).removeprefix("Value error, "), where) from None


def figure_lines(spec: LoadTestSpec, result: LoadTestResult) -> list[str]:
    """The stored and shown figures of a load test, one per line, then each threshold's verdict."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    lines = [
        f"requests: {result.completed} of {result.requested} completed in {result.duration_s:.2f} s "
        f"({result.requests_per_second:.0f}/s) at concurrency {spec.concurrency}"
        + (f" (stopped by the time limit: {result.stop_detail()})" if result.stopped_by_time_limit else ""),
        f"errors: {result.errors} ({result.error_rate:.1%}) of {result.sent} sent"
        " (timeouts, transport errors, statuses >= 400, abandoned at the time limit)",
        f"latency: p50 {ms(result.p50_ms)}, p95 {ms(result.p95_ms)}, p99 {ms(result.p99_ms)}, max {ms(result.max_ms)}",
    ]
    t = spec.thresholds
    limits = [("p50", t.p50_ms, " ms"), ("p95", t.p95_ms, " ms"), ("p99", t.p99_ms, " ms")]
    shown = [f"{name} <= {limit:g}{unit}" for name, limit, unit in limits if limit is not None]
    if t.max_error_rate is not None:
        shown.append(f"error rate <= {t.max_error_rate:.1%}")
    lines.append("thresholds: " + (", ".join(shown) or "none") + ("; a partial run is allowed" if spec.allow_partial else ""))
    lines += [f"BROKEN: {b}" for b in result.breaches] or ["verdict: every threshold held"]
    lines += [f"error sample: {e}" for e in result.error_samples]
    return lines


async def load_test_stage(app: Any, loaded: LoadedConfig, stage: StageRecord, *, commit: str) -> State:
    """Run a load-test stage: one recorded step with the figures; CheckFailed when a threshold broke."""
    spec = render_load_test(loaded, stage.name, commit)
    host = stage.environment or "local"
    label = f"load-test: {spec.requests} x {spec.method} at concurrency {spec.concurrency}"
    step_id = app.store.start_step(stage.id, name=label, host=host, command=app.masker(" ".join(spec.urls)))
    app.observer.step_started(host, label)
    started = time.monotonic()
    try:
        result = await run_load_test(spec, clock=SystemClock())
    except asyncio.CancelledError:
        app.store.finish_step(step_id, State.CANCELLED, exit_code=None, log="")
        raise
    lines = [app.masker(line) for line in figure_lines(spec, result)]
    state = State.SUCCEEDED if result.ok else State.FAILED
    app.store.finish_step(step_id, state, exit_code=None, log="\n".join(lines))
    for line in lines:
        app.observer.output(host, "stdout" if result.ok else "stderr", line)
    app.observer.step_finished(host, label, state, None, time.monotonic() - started)
    try:
        raise_for_breaches(result)
    except CheckFailed as exc:
        raise CheckFailed(
            f"load test of {stage.environment} failed: {'; '.join(result.breaches)}",
            check=stage.name,
            evidence=exc.evidence or "; ".join(result.breaches),
            hint=f"'slipway logs {stage.run_id} --stage {stage.name}' shows the figures; "
            "nothing was rolled back: the release stays deployed",
        ) from exc
    return State.SUCCEEDED


def render_all(loaded: LoadedConfig, release: ReleaseInfo) -> int:
    """Render every check and load test of every environment and host (``slipway validate``); the count."""
    from slipway.services.releases import host_views

    project = loaded.project
    count = 0
    for name, env in project.environments.items():
        for host in (h for view in host_views(loaded, name) for h in view):  # blue/green: each slot's view
            count += len(
                render_checks(
                    loaded, project.deploy.checks, host_context(loaded, name, release, host), ("deploy", "checks")
                )
            )
        context = environment_context(loaded, name, release)
        count += len(render_checks(loaded, env.smoke, context, ("environments", name, "smoke")))
        count += len(render_checks(loaded, env.dependencies, context, ("environments", name, "dependencies")))
    for stage in project.pipeline:
        if stage.load_test is not None:
            render_load_test(loaded, stage.name, release.commit)
            count += 1
    return count
