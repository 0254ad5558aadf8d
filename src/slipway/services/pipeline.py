"""Use cases of runs: create a pipeline run, drive it, approve or reject its gates, promote an artifact,
roll back, resume. The handlers of each stage kind are in :mod:`slipway.services.stages`."""

from __future__ import annotations

from dataclasses import dataclass

from slipway.artifacts.store import PREFIX, parse_digest
from slipway.config import LoadedConfig
from slipway.engine.runner import drive_run
from slipway.engine.strategy import BlueGreen
from slipway.errors import CanaryRejected, ConfigError, GateError, StateError, StoreError
from slipway.model.config import Project, Stage
from slipway.model.containers import ImageArtifactSpec
from slipway.model.records import RunRecord, StageRecord
from slipway.model.states import Decision, DeploymentKind, RunKind, StageKind, State
from slipway.services import canary, ordering, recovery, releases, switchback
from slipway.services import deployments as dep
from slipway.services import freeze as freezes
from slipway.services import migrations as database
from slipway.services.app import App
from slipway.services.environments import require_environment
from slipway.services.secrets import reached_environments, require_secrets
from slipway.services.source import run_config
from slipway.services.stages import PipelineRun
from slipway.services.workspace import prune_workspaces
from slipway.vcs import check_commit_links, resolve_commit


@dataclass(frozen=True)
class RunOutcome:
    """How a command that drives a run left it."""

    run_id: int
    state: State
    artifact_digest: str | None


async def start_run(
    app: App,
    *,
    rev: str = "HEAD",
    allow_dirty: bool = False,
    allow_older: str | None = None,
    override_freeze: str | None = None,
) -> RunOutcome:
    """Create a run for ``rev`` (:func:`create_run`) and drive it (:func:`continue_run`)."""
    check_freeze_override(override_freeze)
    run = create_run(app, rev=rev, allow_dirty=allow_dirty, allow_older=allow_older)
    return await continue_run(app, run.id, allow_older=allow_older, override_freeze=override_freeze)


def create_run(
    app: App, *, rev: str = "HEAD", allow_dirty: bool = False, allow_older: str | None = None, pushed: bool = False
) -> RunRecord:
    """Record a pending run for ``rev`` with the pipeline *of that commit*, without driving it.

    Before anything is recorded: the commit's slipway.yml is the working tree's (or ``allow_dirty``, or
    the commit was ``pushed`` and a trigger starts the run), every secret of every environment it reaches
    resolves, and no deploy it makes would move an environment to an ancestor of what it runs (or
    ``allow_older`` gives the reason; pass the same reason to :func:`continue_run`). :func:`continue_run`
    drives it, in this process or another.
    """
    commit = resolve_commit(app.root, rev)
    if allow_older is not None:
        _check_reason(allow_older)
    loaded = run_config(app, commit, allow_dirty=allow_dirty, pushed=pushed)
    check_run_can_start(app, loaded, commit=commit, allow_older=allow_older)
    _prune(app)  # what crashed runs or another state store left behind
    return app.store.get_run(_create_pipeline_run(app, commit, loaded))


def _prune(app: App) -> None:
    """Remove the workspaces no unfinished run needs; a failure to do so never fails a run."""
    try:
        removed = prune_workspaces(app)
    except (OSError, StoreError) as exc:  # never hides the run's own outcome (a store outage: its journal)
        app.observer.message(f"could not prune {app.settings.state_dir / 'work'}: {exc}")
        return
    if removed:
        app.observer.message(f"pruned {len(removed)} workspace(s) no unfinished run needs")


def check_run_can_start(app: App, loaded: LoadedConfig, *, commit: str, allow_older: str | None = None) -> None:
    """What ``run`` and ``run --dry-run`` check before anything runs: secrets, then older commits."""
    require_secrets(loaded, reached_environments(loaded.project), environ=app.environ, what="this run")
    deploys = [s.environment for s in loaded.project.pipeline if s.kind is StageKind.DEPLOY and s.environment]
    ordering.check_pipeline_not_older(app, deploys, commit=commit, digest=None, allow_older=allow_older)


def _create_pipeline_run(app: App, commit: str, loaded: LoadedConfig) -> int:
    project = loaded.project
    check_commit_links(app.root, commit)  # an unsafe symlink is refused before a run exists
    return app.store.create_run(
        project=project.name,
        kind=RunKind.PIPELINE,
        commit=commit,
        triggered_by=app.settings.actor,
        config_text=loaded.text,
        config_path=str(app.config.path),
        stages=[(s.name, s.kind, s.environment) for s in project.pipeline],
    )


async def continue_run(
    app: App, run_id: int, *, allow_older: str | None = None, override_freeze: str | None = None
) -> RunOutcome:
    """Drive a run from its first stage that is not final, then prune the workspaces nothing needs.

    The process holds the lock ``run N`` while it drives, so a crash is found by the next command.
    ``override_freeze`` (a reason) lets its deploy stages start inside a freeze (services/freeze.py).
    """
    check_freeze_override(override_freeze)
    try:
        with recovery.driving(app, run_id):
            runner = PipelineRun(app, run_id, allow_older=allow_older, override_freeze=override_freeze)
            state = await runner.drive()
    finally:
        _prune(app)
    run = app.store.get_run(run_id)
    return RunOutcome(run_id, state, run.artifact_digest)


def waiting_gate(app: App, run_id: int) -> tuple[RunRecord, StageRecord]:
    """The run and the gate it waits at; GateError for a superseded run, StateError for one not waiting."""
    run = app.store.get_run(run_id)
    stage = next((s for s in run.stages if s.state is State.WAITING), None)
    if run.state is State.SUPERSEDED:
        raise GateError(
            f"run {run_id} was {run.error}",
            hint="approve the newer run; to deploy this run's artifact anyway: 'slipway promote DIGEST --to ENV "
            "--allow-older --reason TEXT'",
        )
    if run.state is not State.WAITING or stage is None or stage.kind not in (StageKind.APPROVAL, StageKind.DEPLOY):
        raise StateError(
            f"run {run_id} is {run.state.value}, not waiting for approval",
            hint="'slipway status' and 'slipway history' show which runs are waiting",
        )
    return run, stage


async def approve(
    app: App, run_id: int, *, reason: str, allow_older: bool = False, override_freeze: str | None = None
) -> RunOutcome:
    """Record an approval (who and why) and continue the run from the store.

    Refused before anything is recorded when a secret of an environment still ahead cannot be resolved
    in this process, or when a deploy still ahead would move an environment backwards (unless ``allow_older``).
    """
    check_freeze_override(override_freeze)
    older = record_approval(app, run_id, reason=reason, allow_older=allow_older)
    return await continue_run(app, run_id, allow_older=older, override_freeze=override_freeze)


def record_approval(app: App, run_id: int, *, reason: str, allow_older: bool = False) -> str | None:
    """:func:`approve` without driving the run on: check, record the approval, set the run running.
    Returns the reason to pass to :func:`continue_run` as ``allow_older``."""
    run, stage = waiting_gate(app, run_id)
    _check_reason(reason)
    loaded = app.config_of(run.config_text, run.config_path)
    ahead = reached_environments(loaded.project, after=stage.index)
    require_secrets(loaded, ahead, environ=app.environ, what=f"the rest of run {run_id}")
    deploys = [s.environment for s in run.stages[stage.index :] if s.kind is StageKind.DEPLOY and s.environment]
    older = reason if allow_older else None
    ordering.check_pipeline_not_older(app, deploys, commit=run.commit, digest=run.artifact_digest, allow_older=older)
    allowed = loaded.project.stage(stage.name).approvers if stage.kind is StageKind.APPROVAL else ()
    actor = app.settings.actor
    if allowed and not app.settings.identity.answers_to(allowed):
        raise GateError(
            f"{actor} may not approve {stage.name}; approvers: {', '.join(allowed)}",
            hint=_approvers_hint(app),
        )
    app.store.add_approval(run_id=run_id, stage_name=stage.name, decision=Decision.APPROVED, by=actor, reason=reason)
    if stage.kind is StageKind.APPROVAL:  # a parked canary's deploy stage is not done: it runs again, and goes on
        app.store.set_stage_state(stage.id, State.SUCCEEDED)
    app.store.set_run_state(run_id, State.RUNNING, actor=actor)
    return older


async def reject(app: App, run_id: int, *, reason: str) -> RunOutcome:
    """Record a rejection and end the run; a parked canary's hosts go back to the release each ran."""
    outcome = record_rejection(app, run_id, reason=reason)
    if outcome is not None:
        return outcome
    return await finish_rejected_canary(app, run_id)


async def finish_rejected_canary(app: App, run_id: int) -> RunOutcome:
    """Drive a run whose parked canary was rejected: the deployment reverts its canary and fails the run."""
    try:
        return await continue_run(app, run_id)
    except CanaryRejected:
        return RunOutcome(run_id, State.FAILED, app.store.get_run(run_id).artifact_digest)


def record_rejection(app: App, run_id: int, *, reason: str) -> RunOutcome | None:
    """:func:`reject` without driving: record the rejection and end the run at a gate (its outcome), or,
    for a parked canary, set the run running and return None: :func:`finish_rejected_canary` goes on."""
    run, stage = waiting_gate(app, run_id)
    _check_reason(reason)
    actor = app.settings.actor
    app.store.add_approval(run_id=run_id, stage_name=stage.name, decision=Decision.REJECTED, by=actor, reason=reason)
    if stage.kind is StageKind.DEPLOY:
        app.store.set_run_state(run_id, State.RUNNING, actor=actor)
        return None
    app.store.set_stage_state(stage.id, State.FAILED, error=f"rejected by {actor}: {reason}")
    for later in run.stages:
        if later.index > stage.index and later.state is State.PENDING:
            app.store.set_stage_state(later.id, State.SKIPPED)
    app.store.set_run_state(run_id, State.FAILED, error=f"rejected by {actor} at {stage.name}: {reason}", actor=actor)
    return RunOutcome(run_id, State.FAILED, run.artifact_digest)


def _approvers_hint(app: App) -> str:
    if app.settings.identity.required_by:  # --as and SLIPWAY_USER are refused (docs/config.md, "identity")
        return "ask one of them; approvers match your login name or git user.email"
    return (
        "ask one of them; approvers match --as, SLIPWAY_USER, your login name or git user.email "
        "(--as NAME when acting for them is allowed)"
    )


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise GateError("a reason is required", hint="pass --reason TEXT; it is kept in the audit log")


def check_freeze_override(reason: str | None) -> None:
    """GateError for a blank ``--override-freeze`` reason, before anything is recorded (services/freeze.py)."""
    if reason is not None and not reason.strip():
        raise GateError(
            "a reason is required to override a freeze", hint="pass --override-freeze REASON; it is kept in the audit log"
        )


def normalise_digest(digest: str) -> str:
    """``sha256:<hex>`` from either form."""
    return PREFIX + parse_digest(digest)


def missing_for_promotion(app: App, project: Project, digest: str, environment: str) -> list[str]:
    """The stages before ``environment``'s deploy stage that this artifact has not passed in any run."""
    index = project.deploy_stage_index(environment)
    if index is None:
        raise GateError(
            f"the pipeline has no deploy stage for {environment}",
            hint="promotion follows the pipeline: add a deploy stage for it",
        )
    passed: set[str] = set()
    for run in app.store.runs_with_artifact(digest):
        passed |= {s.name for s in run.stages if s.state is State.SUCCEEDED}
    return [s.name for s in project.pipeline[:index] if s.name not in passed]


async def promote(
    app: App, digest: str, *, environment: str, allow_older: str | None = None, override_freeze: str | None = None
) -> RunOutcome:
    """Deploy an artifact that already passed every stage before ``environment`` (never rebuilt), then run
    the stages that follow that deploy in the pipeline (:func:`promotion_stages`), as a run would."""
    check_freeze_override(override_freeze)
    run_id = create_promotion(app, digest, environment=environment, allow_older=allow_older)
    return await continue_run(app, run_id, allow_older=allow_older, override_freeze=override_freeze)


def create_promotion(app: App, digest: str, *, environment: str, allow_older: str | None = None) -> int:
    """:func:`promote` without driving: every check, then the pending promotion run's id."""
    digest = normalise_digest(digest)
    if allow_older is not None:
        _check_reason(allow_older)
    project = app.config.project
    require_environment(project, environment)
    record = app.store.get_artifact(digest)
    if record is None:
        raise GateError(
            f"artifact {digest} was never built by a run of this project",
            hint="'slipway history' lists the artifacts that were built",
        )
    if not isinstance(project.artifact, ImageArtifactSpec):  # an image is pulled by digest when deployed
        app.artifacts.manifest(digest)  # the archive's digest, and the manifest against the archive
    missing = missing_for_promotion(app, project, digest, environment)
    if missing:
        raise GateError(
            f"artifact {digest[:19]} has not passed {', '.join(missing)}, which come before {environment}",
            hint="run the pipeline for its commit (and approve its gates) before promoting it",
        )
    require_secrets(app.config, [environment], environ=app.environ, what=f"promoting to {environment}")
    ordering.check_pipeline_not_older(app, [environment], commit=record.commit, digest=digest, allow_older=allow_older)
    return app.store.create_run(
        project=project.name,
        kind=RunKind.PROMOTE,
        commit=record.commit,
        triggered_by=app.settings.actor,
        config_text=app.config.text,
        config_path=str(app.config.path),
        stages=promotion_stages(project, environment),
        artifact_digest=digest,
    )


def promotion_stages(project: Project, environment: str) -> list[tuple[str, StageKind, str | None]]:
    """The deploy of ``environment``, then the stages after its deploy stage that work on it (acceptance,
    post-deploy, load-test), up to the next approval or deploy stage."""
    stages: list[tuple[str, StageKind, str | None]] = [(f"promote-{environment}", StageKind.DEPLOY, environment)]
    index = project.deploy_stage_index(environment)
    for stage in project.pipeline[(index or 0) + 1 :]:
        if stage.kind in (StageKind.APPROVAL, StageKind.DEPLOY):
            break
        if stage.environment == environment:
            stages.append((stage.name, stage.kind, stage.environment))
    return stages


async def rollback(
    app: App, environment: str, *, to_release: str | None = None, reason: str | None = None
) -> RunOutcome:
    """Switch every target of ``environment`` back to an earlier release, without rebuilding."""
    run_id, release_id = await create_rollback(app, environment, to_release=to_release, reason=reason)
    return await drive_rollback(app, run_id, release_id=release_id, reason=reason)


async def create_rollback(
    app: App, environment: str, *, to_release: str | None = None, reason: str | None = None
) -> tuple[int, str]:
    """:func:`rollback` without driving: every check, then (the pending rollback run's id, its release)."""
    project = app.config.project
    if environment not in project.environments:
        raise ConfigError(
            f"environment {environment!r} is not defined", hint="defined: " + ", ".join(sorted(project.environments))
        )
    canary.refuse_while_waiting(app, environment)  # nothing moves under a canary that waits for a person
    if isinstance(project.environments[environment].strategy, BlueGreen):  # a switch back to the warm slot
        target = switchback.choose_rollback(app, environment, to_release)
    else:
        target = releases.choose_rollback(app, environment, to_release)
    await database.check_rollback(app, app.config, environment, digest=target.digest, release=target.release_id)
    run_id = app.store.create_run(
        project=project.name,
        kind=RunKind.ROLLBACK,
        commit=target.commit,
        triggered_by=app.settings.actor,
        config_text=app.config.text,
        config_path=str(app.config.path),
        stages=[(f"rollback-{environment}", StageKind.DEPLOY, environment)],
        artifact_digest=target.digest,
    )
    return run_id, target.release_id


async def drive_rollback(app: App, run_id: int, *, release_id: str, reason: str | None) -> RunOutcome:
    """Drive a rollback run made by :func:`create_rollback`."""
    return await _drive_single(app, run_id, DeploymentKind.ROLLBACK, release_id=release_id, reason=reason)


async def _drive_single(
    app: App, run_id: int, kind: DeploymentKind, *, release_id: str | None = None, reason: str | None = None
) -> RunOutcome:
    run = app.store.get_run(run_id)
    loaded = app.config_of(run.config_text, run.config_path)

    async def handler(stage: StageRecord) -> State:
        assert stage.environment is not None and run.artifact_digest is not None
        if kind is not DeploymentKind.ROLLBACK:  # a resumed promotion; a rollback is never frozen
            timeout = Stage.model_fields["timeout"].default
            await freezes.enforce(app, loaded.project, stage.environment, override=None, timeout=timeout, run_id=run_id)
        await dep.deploy(
            app,
            loaded,
            releases.DeployRequest(
                environment=stage.environment,
                digest=run.artifact_digest,
                run_id=run_id,
                stage_id=stage.id,
                kind=kind,
                release_id=release_id,
                commit=run.commit,
                reason=reason,
            ),
        )
        return State.SUCCEEDED

    with recovery.driving(app, run_id):
        state = await drive_run(app.store, run_id, {StageKind.DEPLOY: handler}, app.observer, actor=app.settings.actor)
    return RunOutcome(run_id, state, run.artifact_digest)


async def resume(app: App, run_id: int) -> RunOutcome:
    """Continue an interrupted or cancelled run from its first stage that did not finish (run again)."""
    with recovery.driving(app, run_id):
        recovery.prepare_resume(app, run_id)
        run = app.store.get_run(run_id)
        if run.kind is RunKind.PIPELINE:
            return await continue_run(app, run_id)
        kind, release_id, reason = recovery.single_deployment_of(app, run_id)
        return await _drive_single(app, run_id, kind, release_id=release_id, reason=reason)
