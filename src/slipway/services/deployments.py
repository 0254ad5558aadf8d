"""Deploying an artifact to an environment, and rolling an environment back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from slipway.artifacts.archive import Manifest
from slipway.artifacts.store import parse_digest
from slipway.clock import SystemClock
from slipway.config import LoadedConfig
from slipway.engine.deploy import DeploymentRun, run_deployment
from slipway.engine.planner import (
    Action,
    DeploymentPlan,
    HostInfo,
    PlanStep,
    ReleaseInfo,
    describe_plan,
    plan_deployment,
    template_context,
)
from slipway.engine.slots import SlotInfo
from slipway.engine.steps import StepRunner
from slipway.engine.strategy import BlueGreen
from slipway.engine.template import render
from slipway.errors import GateError
from slipway.model.config import Project
from slipway.model.containers import ImageArtifactSpec
from slipway.model.records import DeploymentRecord, HostRelease
from slipway.model.states import DeploymentKind, State
from slipway.ports import Target
from slipway.services import canary
from slipway.services import migrations as database
from slipway.services.app import App, make_target, target_root
from slipway.services.checks import DeploymentChecks, deployment_checks
from slipway.services.envlock import environment_lock
from slipway.services.secrets import resolve_secrets
from slipway.services.traffic import RouterGate, traffic_gate


def new_release_id(digest: str, now: float) -> str:
    """Release ids sort by time and name their artifact: ``20261124T101500Z-<12 hex of the digest>``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + parse_digest(digest)[:12]


def hosts_of(loaded: LoadedConfig, environment: str) -> list[HostInfo]:
    """The planner's view of an environment's targets."""
    env = loaded.project.environments[environment]
    return [
        HostInfo(t.name, target_root(t, loaded.root), tuple(t.roles), dict(t.vars), getattr(t, "address", "127.0.0.1"))
        for t in env.targets
    ]


def environment_url(project: Project, environment: str) -> str | None:
    """The environment's URL with its variables filled in."""
    env = project.environments[environment]
    if not env.url:
        return None
    return render(
        env.url,
        {"vars": env.vars, "environment": {"name": environment}},
        shell=False,
        where=f"environments.{environment}.url",
    )


def _render(template: str, context: dict[str, object], where: str) -> str:
    return render(template, context, shell=True, where=where)


def host_views(loaded: LoadedConfig, environment: str) -> list[list[HostInfo]]:
    """Every way hooks and checks see the hosts: one view, or one per slot of a blue/green environment."""
    hosts = hosts_of(loaded, environment)
    strategy = loaded.project.environments[environment].strategy
    if not isinstance(strategy, BlueGreen):
        return [hosts]
    return [
        [replace(h, slot=SlotInfo(slot, strategy.slot_vars.get(slot, {}))) for h in hosts]
        for slot in sorted(strategy.slots)
    ]


def make_plan(
    loaded: LoadedConfig,
    environment: str,
    release: ReleaseInfo,
    *,
    rollback: bool = False,
    hosts: Sequence[HostInfo] | None = None,
) -> DeploymentPlan:
    """Plan a deployment of ``release`` to ``environment`` (blue/green: to its first slot unless ``hosts``)."""
    project = loaded.project
    if hosts is None:  # which slot is idle, only the router knows: a plan without it shows the first
        hosts = host_views(loaded, environment)[0]
    return plan_deployment(
        project=project,
        environment=environment,
        hosts=hosts,
        release=release,
        render=_render,
        url=environment_url(project, environment),
        rollback=rollback,
    )


def dry_run_lines(loaded: LoadedConfig, environment: str) -> list[str]:
    """The plan of a deployment whose artifact is not built yet, for ``run --dry-run``."""
    placeholder = ReleaseInfo("<release-id>", "sha256:<built-by-this-run>", "<commit>")
    if isinstance(loaded.project.artifact, ImageArtifactSpec):
        from slipway.services.container_rollout import describe_rollout

        return describe_rollout(loaded, environment)
    return describe_plan(make_plan(loaded, environment, placeholder))


@dataclass(frozen=True)
class DeployRequest:
    """What to deploy where, on behalf of which run and stage."""

    environment: str
    digest: str
    run_id: int | None
    stage_id: int
    kind: DeploymentKind = DeploymentKind.DEPLOY
    release_id: str | None = None
    commit: str | None = None
    reason: str | None = None


async def deploy(app: App, loaded: LoadedConfig, request: DeployRequest) -> str:
    """Deploy (or roll back to) a release on every target of an environment; return the release id.

    Everything that can be checked without touching a host is checked first: the secrets resolve, the
    artifact is in the store and its bytes match its digest, the environment is not locked.
    """
    project = loaded.project
    env = project.environments[request.environment]
    resume = canary.resume_of(app, loaded, request.environment, request.run_id)  # a canary that waited
    if isinstance(env.strategy, BlueGreen):  # two slots per host: its own module
        from slipway.services import bluegreen

        return await bluegreen.deploy(app, loaded, request)
    if isinstance(project.artifact, ImageArtifactSpec):  # containers on engines: docs/containers.md
        from slipway.services.container_rollout import deploy_containers

        return await deploy_containers(app, loaded, request, resume)
    secrets = resolve_secrets(env, environment=request.environment, root=loaded.root, environ=app.environ)
    app.masker.add(secrets.values())
    rollback = request.kind is DeploymentKind.ROLLBACK
    manifest = None
    if not rollback:  # verifies the archive's digest, and the manifest against it, before any host is touched
        manifest = app.artifacts.manifest(request.digest)
    artifact_commit = artifact_commit_of(app, request.digest, manifest.commit if manifest else "unknown")
    commit = request.commit or artifact_commit
    release_id = (resume.release_id if resume else None) or request.release_id or new_release_id(request.digest, time.time())
    release = ReleaseInfo(release_id, request.digest, commit, artifact_commit)
    plan = make_plan(loaded, request.environment, release, rollback=rollback)
    checks = deployment_checks(
        app,
        loaded,
        environment=request.environment,
        release=release,
        hosts=hosts_of(loaded, request.environment),
        stage_id=request.stage_id,
        secrets=secrets,
        rollback=rollback,
    )
    await checks.before()  # the dependencies: an open breaker fails fast, before the lock and any host
    hosts = hosts_of(loaded, request.environment)
    url = environment_url(project, request.environment)
    traffic = traffic_gate(
        env,
        environment=request.environment,
        contexts={
            h.name: template_context(
                project=project, environment=request.environment, env=env, host=h, release=release, url=url
            )
            for h in hosts
        },
        clock=SystemClock(),
        observer=app.observer,
    )
    if traffic is not None:
        await traffic.prepare()  # nginx runs and lists every host, before the lock and any host is touched
    with environment_lock(app, request.environment, run_id=request.run_id):
        return await _deploy_hosts(app, loaded, request, resume, plan, checks, traffic, manifest, secrets)


async def _deploy_hosts(
    app: App,
    loaded: LoadedConfig,
    request: DeployRequest,
    resume: canary.Resume | None,
    plan: DeploymentPlan,
    checks: DeploymentChecks,
    traffic: RouterGate | None,
    manifest: Manifest | None,
    secrets: Mapping[str, str],
) -> str:
    """Under the environment's lock: the migrations, the targets, the deployment run."""
    project, store, env = loaded.project, app.store, loaded.project.environments[request.environment]
    rollback, release = request.kind is DeploymentKind.ROLLBACK, plan.release
    release_id, commit, artifact_commit = release.id, release.commit, release.artifact_commit
    targets: dict[str, Target] = {}
    try:
        # Before any host is touched: the release's migrations lint, fit the database's history, and the
        # database answers; a rollback past an applied contract migration is refused here.
        migrations = await database.for_deployment(
            app,
            loaded,
            environment=request.environment,
            digest=request.digest,
            release=release_id,
            stage_id=request.stage_id,
            rollback=rollback,
        )
        gate = asyncio.Semaphore(env.max_connecting)
        targets = {
            t.name: make_target(t, root=loaded.root, environ=app.environ, connect_gate=gate) for t in env.targets
        }
        deployment_id = canary.take_up(app, resume) if resume else store.start_deployment(
            environment=request.environment,
            kind=request.kind,
            run_id=request.run_id,
            artifact_digest=request.digest,
            release_id=release_id,
            deployed_by=app.settings.actor,
            reason=request.reason,
            strategy=plan.strategy,
        )
        steps = StepRunner(
            store=store,
            stage_id=request.stage_id,
            observer=app.observer,
            masker=app.masker,
            env={
                **secrets,
                "SLIPWAY_ENVIRONMENT": request.environment,
                "SLIPWAY_RELEASE_ID": release_id,
                "SLIPWAY_COMMIT": commit,
                "SLIPWAY_ARTIFACT_COMMIT": artifact_commit,
                "SLIPWAY_DIGEST": request.digest,
            },
        )
        if traffic is not None:  # each drain, enable and readiness gate is a step 'slipway logs' shows
            traffic.steps = steps
        artifacts = app.artifacts

        async def source(wanted: set[str]) -> dict[str, bytes]:
            # fetch() verified the archive's digest before any host was touched.
            return await asyncio.to_thread(artifacts.read_objects, request.digest, wanted, verified=True)

        run = DeploymentRun(
            plan=plan,
            targets=targets,
            steps=steps,
            store=store,
            deployment_id=deployment_id,
            run_id=request.run_id,
            manifest=manifest,
            source=None if rollback else source,
            shared=project.deploy.shared,
            keep_releases=project.deploy.keep_releases,
            revert_steps=lambda host, before: revert_steps(loaded, request.environment, host, before),
            parallel=env.parallel,
            before_migrate=migrations.expand if migrations and not rollback else None,
            verify_host=checks.verify_host,
            verify_environment=checks.verify_environment if checks.has_environment_checks else None,
            halt_on_failed_check=checks.halt,
            breaker=env.circuit_breaker,
            traffic=traffic,
            resumed=resume.resumed if resume else None,
        )
        app.observer.message(f"strategy: {plan.strategy}, {len(plan.batches)} batch(es)")
        await run_deployment(run)
        checks.raise_kept()  # a dependency's breaker was open after the switch: the release stays, the run fails
        if migrations and not rollback:
            await migrations.contract()  # held ones wait; due ones run now that verify passed everywhere
        return release_id
    finally:
        await asyncio.gather(*(t.close() for t in targets.values()), return_exceptions=True)


def revert_steps(
    loaded: LoadedConfig, environment: str, host: str, before: HostRelease, *, info: HostInfo | None = None
) -> Sequence[PlanStep]:
    """The activate hooks of the release a host (``info``: one slot of it) ran before, to restart it."""
    info = info or next(h for h in hosts_of(loaded, environment) if h.name == host)
    plan = plan_deployment(
        project=loaded.project,
        environment=environment,
        hosts=[info],
        release=ReleaseInfo(before.release_id, before.artifact_digest, before.commit),
        render=_render,
        url=environment_url(loaded.project, environment),
        rollback=True,
    )
    return [s for s in plan.phase_steps(host, "activate") if s.action is Action.HOOK]


@dataclass(frozen=True)
class RollbackTarget:
    """The release an environment goes back to."""

    release_id: str
    digest: str
    commit: str


def choose_rollback(app: App, environment: str, to_release: str | None) -> RollbackTarget:
    """The release to go back to: ``to_release``; else, when hosts run releases of a deployment that did not
    succeed (a mixed environment), the release of the last deployment that did; else the one before it."""
    history = [d for d in app.store.deployments(environment, limit=200) if d.state is State.SUCCEEDED]
    running = {h.release_id for h in app.store.host_releases(environment)}
    if not history and not running:
        raise GateError(f"nothing was ever deployed to {environment}: there is nothing to roll back to")
    if to_release:
        for d in history:
            if d.release_id == to_release:
                return RollbackTarget(d.release_id, d.artifact_digest, release_commit_of(app, d))
        known = ", ".join(dict.fromkeys(d.release_id for d in history)) or "none"
        raise GateError(
            f"release {to_release} was never deployed successfully to {environment}",
            hint=f"releases deployed there: {known}",
        )
    current = history[0].release_id if history else None
    if current is not None and running - {current}:
        # A deployment that did not finish (interrupted, cancelled, halted, failed part-way) left hosts on
        # other releases: every host goes back to what the environment ran before it.
        return RollbackTarget(current, history[0].artifact_digest, release_commit_of(app, history[0]))
    for d in history:
        if d.release_id != current and d.release_id not in running:
            return RollbackTarget(d.release_id, d.artifact_digest, release_commit_of(app, d))
    raise GateError(
        f"{environment} has no earlier release to roll back to",
        hint="'slipway deployments " + environment + "' lists what was deployed",
    )


def release_commit_of(app: App, deployment: DeploymentRecord) -> str:
    """The commit a deployment's release was deployed for (its run's), which its marker names."""
    if deployment.run_id is not None:
        return app.store.get_run(deployment.run_id).commit
    return artifact_commit_of(app, deployment.artifact_digest)


def artifact_commit_of(app: App, digest: str, default: str = "unknown") -> str:
    """The commit that built ``digest`` (``artifact.commit``), as the state store recorded it."""
    record = app.store.get_artifact(digest)
    return record.commit if record else default
