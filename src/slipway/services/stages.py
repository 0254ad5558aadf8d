"""The handlers of each stage kind of one pipeline run: build, commands, deploy, load test, approval.

The engine's runner (:func:`slipway.engine.runner.drive_run`) calls them in the pipeline's order; the
use cases that start, continue and end runs are in :mod:`slipway.services.pipeline`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from slipway.artifacts.archive import build_archive, collect_files
from slipway.config import LoadedConfig
from slipway.engine.pause import DeploymentParked
from slipway.engine.runner import drive_run
from slipway.engine.steps import StepRunner
from slipway.engine.template import render
from slipway.errors import ArtifactError, ArtifactNotFound, StateError
from slipway.model.config import Project, Stage
from slipway.model.containers import ImageArtifactSpec
from slipway.model.queue import WhenBusy
from slipway.model.records import RunRecord, StageRecord
from slipway.model.states import StageKind, State
from slipway.private import make_private_dir
from slipway.services import checks, notifications, ordering, queue, releases
from slipway.services import deployments as dep
from slipway.services import freeze as freezes
from slipway.services.app import App
from slipway.services.build_cache import restore_layers, save_layers
from slipway.services.review_env import run_config_of
from slipway.services.secrets import resolve_secrets
from slipway.services.workspace import with_artifact, workspace
from slipway.targets.local import LocalTarget


class PipelineRun:
    """Handlers for each stage kind of one run; the engine's runner calls them in order."""

    def __init__(
        self, app: App, run_id: int, *, allow_older: str | None = None, override_freeze: str | None = None
    ) -> None:
        self.app = app
        self.run = app.store.get_run(run_id)
        self.allow_older = allow_older  # the person's reason to deploy an older artifact (services/ordering.py)
        self.override_freeze = override_freeze  # the person's reason to deploy inside a freeze (services/freeze.py)
        self.loaded: LoadedConfig = run_config_of(app, self.run)  # a merge request's: with its review environment
        self.project: Project = self.loaded.project

    async def drive(self) -> State:
        """Run the remaining stages."""
        handlers = {
            StageKind.BUILD: self.build,
            StageKind.TEST: self.commands,
            StageKind.ACCEPTANCE: self.commands,
            StageKind.POST_DEPLOY: self.commands,
            StageKind.DEPLOY: self.deploy,
            StageKind.APPROVAL: self.approval,
            StageKind.LOAD_TEST: self.load_test,
        }
        return await drive_run(self.app.store, self.run.id, handlers, self.app.observer, actor=self.app.settings.actor)

    def _steps(self, stage: StageRecord, env: dict[str, str] | None = None) -> StepRunner:
        return StepRunner(
            store=self.app.store, stage_id=stage.id, observer=self.app.observer, masker=self.app.masker, env=env or {}
        )

    async def build(self, stage: StageRecord) -> State:
        """Build the run's one artifact, or reuse the one already built for this commit."""
        if isinstance(self.project.artifact, ImageArtifactSpec):  # built, smoke tested and pushed by the engine
            from slipway.services import containers  # imports the docker SDK: image projects only

            ws = workspace(self.app, self.run)
            return await containers.build_image_artifact(self.app, self.loaded, self.run, stage, workspace=ws)
        store, artifacts = self.app.store, self.app.artifacts
        existing = store.artifact_for_commit(self.project.name, self.run.commit)
        if existing and self._verifies(existing.digest):
            store.set_run_artifact(self.run.id, existing.digest)
            self.app.observer.message(f"commit {self.run.commit[:12]} was built before: reusing {existing.digest}")
            return State.SUCCEEDED
        ws = workspace(self.app, self.run, fresh=True)  # a build starts from the commit alone
        builder = LocalTarget("build", ws, base_env=self.app.environ)
        steps = self._steps(stage, {"SLIPWAY_COMMIT": self.run.commit})
        context: dict[str, object] = {"project": self.project.name, "commit": self.run.commit}
        layers = await restore_layers(self.app, self.loaded, ws, steps=steps, target=builder, commit=self.run.commit)
        for i, command in enumerate(self.project.artifact.build):  # templated like stage commands
            text = render(command, context, where=f"artifact.build[{i}]")
            await steps.run_command(builder, f"build: {command}", text, cwd=str(ws), timeout=3600)
        await save_layers(self.app, layers, ws, steps=steps, target=builder)  # before the artifact: a layer is an input
        files = collect_files(ws, self.project.artifact.paths, self.project.artifact.exclude)
        make_private_dir(artifacts.root)
        fd, tmp_name = tempfile.mkstemp(dir=artifacts.root, prefix=".build-", suffix=".tar.gz")
        tmp = Path(tmp_name)
        try:
            with open(fd, "wb") as out:
                manifest = build_archive(
                    ws, files, out, project=self.project.name, commit=self.run.commit, built_at=time.time()
                )
            stored = artifacts.add(tmp, manifest)
        finally:
            tmp.unlink(missing_ok=True)  # a failed build leaves no half-written archive behind
        store.record_artifact(
            digest=stored.digest,
            project=self.project.name,
            commit=self.run.commit,
            built_at=stored.built_at,
            size=stored.size,
            file_count=len(stored.files),
            run_id=self.run.id,
        )
        store.set_run_artifact(self.run.id, stored.digest)
        self.app.observer.message(f"artifact {stored.digest} ({len(stored.files)} files, {stored.size} bytes)")
        return State.SUCCEEDED

    def _verifies(self, digest: str) -> bool:
        """Whether the stored artifact can be reused: present, and its archive and manifest verify."""
        try:
            self.app.artifacts.manifest(digest)
        except ArtifactNotFound:
            return False  # the artifact store was emptied or replaced: build again
        except ArtifactError as exc:
            self.app.observer.message(f"the stored artifact {digest} does not verify ({exc.message}): building again")
            return False
        return True

    async def commands(self, stage: StageRecord) -> State:
        """Run a test, acceptance or post-deploy stage's commands in the run's workspace."""
        spec = self.project.stage(stage.name)
        env: dict[str, str] = {"SLIPWAY_COMMIT": self.run.commit}
        context: dict[str, object] = {"project": self.project.name, "commit": self.run.commit, "vars": {}}
        if spec.environment:
            environment = self.project.environments[spec.environment]
            secrets = resolve_secrets(
                environment, environment=spec.environment, root=self.loaded.root, environ=self.app.environ
            )
            self.app.masker.add(secrets.values())
            url = releases.environment_url(self.project, spec.environment) or ""
            env.update(secrets)
            env.update({"SLIPWAY_ENVIRONMENT": spec.environment, "SLIPWAY_URL": url})
            env.update({f"SLIPWAY_VAR_{k.upper()}": str(v) for k, v in environment.vars.items()})
            context.update(environment={"name": spec.environment, "url": url}, vars=environment.vars)
        ws = workspace(self.app, self.run)
        if not isinstance(self.project.artifact, ImageArtifactSpec):  # an image is not a tree: tests run in the export
            ws = with_artifact(self.app, self.app.store.get_run(self.run.id), ws)
        runner = LocalTarget("local", ws, base_env=self.app.environ)
        steps = self._steps(stage, env)
        for i, command in enumerate(spec.run):
            text = render(command, context, where=f"pipeline.{stage.name}.run[{i}]")
            await steps.run_command(runner, f"{stage.kind.value}: {command}", text, cwd=str(ws), timeout=spec.timeout)
        return State.SUCCEEDED

    async def deploy(self, stage: StageRecord) -> State:
        """Deploy this run's artifact, and only it: build once, enforced. A busy environment: wait in its
        queue (services/queue.py), or fail at once with ``queue: {when_busy: fail}``."""
        run = self.app.store.get_run(self.run.id)
        if not run.artifact_digest:
            raise StateError(f"run {run.id} has no artifact to deploy: its build stage did not produce one")
        assert stage.environment is not None
        if stage.state is not State.WAITING:  # a parked canary going on is not a new start
            await freezes.enforce(
                self.app, self.project, stage.environment, override=self.override_freeze,
                timeout=self._timeout(stage.name), run_id=run.id,
            )
        if self.project.queue.when_busy is WhenBusy.FAIL:
            return await self._deploy_now(run, stage, stage.environment)
        if not await queue.wait_turn(
            self.app, self.project, run, environment=stage.environment, stage_id=stage.id,
            timeout=self._timeout(stage.name),
        ):
            return State.SUPERSEDED  # a newer run took its place in the queue: recorded, nothing deployed
        try:
            return await self._deploy_now(run, stage, stage.environment)
        finally:
            queue.release(self.app, stage.environment, run.id)  # when it failed before the deployment took it

    async def _deploy_now(self, run: RunRecord, stage: StageRecord, environment: str) -> State:
        """The deployment itself, once its turn came: nothing older than what runs goes out (checked now,
        after any wait: the run ahead may have deployed something newer)."""
        assert run.artifact_digest is not None
        override = ordering.check_not_older(
            self.app, environment, commit=run.commit, digest=run.artifact_digest,
            allow_older=self.allow_older, run_id=run.id,
        )
        try:
            await dep.deploy(
                self.app,
                self.loaded,
                releases.DeployRequest(
                    environment=environment,
                    digest=run.artifact_digest,
                    run_id=run.id,
                    stage_id=stage.id,
                    commit=run.commit,
                    reason=override,
                ),
            )
        except DeploymentParked as parked:  # canary on_success: pause; the state is in the store
            self.app.observer.message(
                f"run {run.id} waits: {parked}: 'slipway approve {run.id} --reason TEXT' goes on, "
                f"'slipway reject {run.id} --reason TEXT' reverts the canary"
            )
            return State.WAITING
        ordering.supersede_waiting(self.app, run, policy=self.project.queue, environment=environment)
        return State.SUCCEEDED

    def _timeout(self, name: str) -> float:
        """The stage's timeout in slipway.yml (a promotion's own deploy stage: the default)."""
        try:
            return self.project.stage(name).timeout
        except KeyError:
            return Stage.model_fields["timeout"].default  # type: ignore[no-any-return]

    async def load_test(self, stage: StageRecord) -> State:
        """Send a bounded load at the environment; the figures are stored as the stage's step."""
        return await checks.load_test_stage(self.app, self.loaded, stage, commit=self.run.commit)

    async def approval(self, stage: StageRecord) -> State:
        """Park the run until somebody approves or rejects it."""
        who = self.project.stage(stage.name).approvers
        ordering.supersede_waiting(self.app, self.run, policy=self.project.queue, gate=stage.name)
        self.app.observer.message(
            f"run {self.run.id} waits for approval at {stage.name}"
            + (f" (approvers: {', '.join(who)})" if who else "")
            + f": slipway approve {self.run.id} --reason TEXT"
        )
        notifications.approval_needed(
            self.app, self.loaded, run=self.run.id, gate=stage.name, commit=self.run.commit,
            environment=self._gated_environment(stage),
        )
        return State.WAITING

    def _gated_environment(self, gate: StageRecord) -> str | None:
        """The environment of the first deploy stage after ``gate``: the one a person lets it reach."""
        later = (s for s in self.run.stages if s.index > gate.index and s.kind is StageKind.DEPLOY)
        return next((s.environment for s in later), None)
