"""``slipway run --dry-run``: what a run of a commit would do, stage by stage, without doing any of it."""

from __future__ import annotations

from dataclasses import dataclass

from slipway.model.states import StageKind
from slipway.services.app import App
from slipway.services.deployments import dry_run_lines
from slipway.services.secrets import reached_environments, require_secrets
from slipway.services.source import run_config
from slipway.vcs import resolve_commit

INDENT = "   "


@dataclass(frozen=True)
class StagePlan:
    """One stage of the plan: what it would run, one action a line (nested lines keep their indent)."""

    name: str
    kind: StageKind
    environment: str | None
    actions: tuple[str, ...]


@dataclass(frozen=True)
class RunPlan:
    """What a run of ``commit`` would do; nothing of it has run and nothing is recorded."""

    project: str
    commit: str
    stages: tuple[StagePlan, ...]


def plan_run(app: App, *, rev: str = "HEAD", allow_dirty: bool = False) -> RunPlan:
    """The plan of a run of ``rev`` with the pipeline of that commit; the same refusals as a run's start
    for a slipway.yml that differs from the working tree's (unless ``allow_dirty``) and unresolved secrets."""
    sha = resolve_commit(app.root, rev)
    loaded = run_config(app, sha, allow_dirty=allow_dirty)
    project = loaded.project
    require_secrets(loaded, reached_environments(project), environ=app.environ, what="this run")
    stages = []
    for stage in project.pipeline:
        if stage.kind is StageKind.BUILD:
            from slipway.services.containers import describe_build  # imports the docker SDK

            actions = [line.removeprefix(INDENT) for line in describe_build(project)]
        elif stage.kind is StageKind.DEPLOY and stage.environment:
            actions = dry_run_lines(loaded, stage.environment)
        elif stage.kind is StageKind.APPROVAL:
            who = f" (approvers: {', '.join(stage.approvers)})" if stage.approvers else ""
            actions = [f"wait for: slipway approve RUN --reason TEXT{who}"]
        else:
            actions = [f"$ {c}" for c in stage.run]
        stages.append(StagePlan(stage.name, stage.kind, stage.environment, tuple(actions)))
    return RunPlan(project.name, sha, tuple(stages))
