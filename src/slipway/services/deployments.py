"""Deploying an artifact to an environment, and rolling an environment back: which kind of deployment an
environment takes (release directories, blue/green slots, containers), and the release-directory kind."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from slipway.artifacts.archive import Manifest
from slipway.clock import SystemClock
from slipway.config import LoadedConfig
from slipway.engine.deploy import DeploymentRun, run_deployment
from slipway.engine.planner import (
    DeploymentPlan,
    ReleaseInfo,
    describe_plan,
    template_context,
)
from slipway.engine.steps import StepRunner
from slipway.engine.strategy import BlueGreen
from slipway.model.containers import ImageArtifactSpec
from slipway.model.states import DeploymentKind
from slipway.ports import Target
from slipway.services import canary, notifications
from slipway.services import migrations as database
from slipway.services.app import App, make_target
from slipway.services.checks import DeploymentChecks, deployment_checks
from slipway.services.envlock import environment_lock
from slipway.services.host_services import host_services
from slipway.services.releases import (
    DeployRequest,
    artifact_commit_of,
    environment_url,
    fresh_release_id,
    hosts_of,
    make_plan,
    revert_steps,
)
from slipway.services.secrets import resolve_secrets
from slipway.services.traffic import RouterGate, traffic_gate


def dry_run_lines(loaded: LoadedConfig, environment: str) -> list[str]:
    """The plan of a deployment whose artifact is not built yet, for ``run --dry-run``."""
    placeholder = ReleaseInfo("<release-id>", "sha256:<built-by-this-run>", "<commit>")
    if isinstance(loaded.project.artifact, ImageArtifactSpec):
        from slipway.services.container_rollout import describe_rollout

        return describe_rollout(loaded, environment)
    return describe_plan(make_plan(loaded, environment, placeholder))


async def deploy(app: App, loaded: LoadedConfig, request: DeployRequest) -> str:
    """Deploy (or roll back to) a release on every target of an environment; return the release id.
    How it ended is notified (slipway.yml's ``notifications``), in the background.

    Everything that can be checked without touching a host is checked first: the secrets resolve, the
    artifact is in the store and its bytes match its digest, the environment is not locked.
    """
    with notifications.deployment_outcome(app, loaded, request) as released:
        released.append(await _deploy(app, loaded, request))
        return released[0]


async def _deploy(app: App, loaded: LoadedConfig, request: DeployRequest) -> str:
    project = loaded.project
    env = project.environments[request.environment]
    resume = canary.resume_of(app, loaded, request.environment, request.run_id)  # a canary that waited
    if isinstance(env.strategy, BlueGreen):  # two slots per host: its own modules
        if request.kind is DeploymentKind.ROLLBACK:
            from slipway.services.switchback import switch_back

            return await switch_back(app, loaded, request)
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
    release_id = (
        (resume.release_id if resume else None)
        or request.release_id
        or fresh_release_id(app, request.environment, request.digest)
    )
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
        root=loaded.root,
    )
    try:
        if traffic is not None:
            await traffic.prepare()  # nginx runs and lists every host, before the lock and any host is touched
        with environment_lock(app, request.environment, run_id=request.run_id):
            return await _deploy_hosts(app, loaded, request, resume, plan, checks, traffic, manifest, secrets)
    finally:
        if traffic is not None:
            await traffic.close()


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

        services = host_services(
            loaded, request.environment, secrets=secrets, clock=SystemClock(), masker=app.masker
        )

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
            restart_services=services.restart if services else None,
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

