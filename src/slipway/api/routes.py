"""The JSON API: every endpoint parses its input, checks the user's role, calls one service function and
returns what it returns. Runs are driven by the server (services/hub.py): an endpoint that starts or
continues one answers 202 with the run as it is once the checks passed and the run is recorded."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from slipway.api.auth import current_user, hub_of
from slipway.errors import NotFound
from slipway.model.access import Action
from slipway.model.states import State
from slipway.services import accounts, breakers, pipeline, recovery, report
from slipway.services.accounts import Principal
from slipway.services.app import App
from slipway.services.hub import LiveFeed
from slipway.services.queries import run_logs

router = APIRouter(prefix="/api")
User = Annotated[Principal, Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=200, description="How many items (a page).")]
Offset = Annotated[int, Query(ge=0, description="How many items to skip.")]
Reason = Annotated[str, Field(min_length=1, max_length=2000, description="Why; kept in the audit log.")]
#: Deploy inside a freeze for this reason (docs/config.md "freezes"); needs the admin role on the environments.
OverrideFreeze = Annotated[str | None, Field(None, min_length=1, max_length=2000)]


class StartRun(BaseModel):
    """Start a pipeline run for a commit."""

    commit: str = Field("HEAD", min_length=1, max_length=200)
    allow_dirty: bool = False
    allow_older_reason: str | None = Field(None, min_length=1, max_length=2000)
    override_freeze: OverrideFreeze = None


class Decide(BaseModel):
    """Approve or reject a gate."""

    reason: Reason
    allow_older: bool = False
    override_freeze: OverrideFreeze = None


class Promote(BaseModel):
    """Deploy a built artifact to an environment."""

    digest: str = Field(min_length=1, max_length=80)
    environment: str = Field(min_length=1, max_length=200)
    allow_older_reason: str | None = Field(None, min_length=1, max_length=2000)
    override_freeze: OverrideFreeze = None


class Rollback(BaseModel):
    """Switch an environment back to an earlier release."""

    reason: Reason
    to_release: str | None = Field(None, min_length=1, max_length=200)


class Unlock(BaseModel):
    """Remove an environment's lock."""

    force: bool = False


def project_app(request: Request, project: str, user: Principal) -> App:
    """The project's App acting as ``user`` (NotFound: 404)."""
    return hub_of(request).project(project).acting_as(user.name)


def require_environment(app: App, environment: str) -> None:
    """NotFound (404) for an environment this project does not define."""
    if environment not in app.config.project.environments:
        raise NotFound(
            f"project {app.config.project.name} has no environment {environment!r}",
            hint="defined: " + ", ".join(sorted(app.config.project.environments)),
        )


def drive(
    request: Request, project: str, user: Principal, run_id: int, work: Callable[[App], Coroutine[Any, Any, Any]]
) -> dict[str, Any]:
    """Drive run ``run_id`` in the background as ``user``; the run as it is now (for a 202)."""
    hub = hub_of(request)
    base = hub.project(project)

    def job(feed: LiveFeed) -> Coroutine[Any, Any, Any]:
        return work(base.acting_as(user.name, observer=feed))

    hub.driver.drive(project, run_id, job)
    return report.run_view(base, run_id)


@router.get("/me", summary="Who you are and what you may do")
def me(user: User) -> dict[str, Any]:
    return {"name": user.name, "grants": [{"role": r, "environments": e} for r, e in user.grants]}


@router.get("/projects", summary="The projects this server serves")
def projects(request: Request, user: User) -> list[dict[str, Any]]:
    user.require(Action.VIEW)
    return [
        {"name": name, "environments": list(app.config.project.environments), "stages": [s.name for s in app.config.project.pipeline]}
        for name, app in hub_of(request).projects.items()
    ]


@router.get("/projects/{project}/status", summary="What runs where: every environment and host")
def status(request: Request, project: str, user: User) -> dict[str, Any]:
    user.require(Action.VIEW)
    return report.status(project_app(request, project, user))


@router.get("/projects/{project}/runs", summary="Runs, newest first (paginated)")
def runs(
    request: Request, project: str, user: User, limit: Limit = 20, offset: Offset = 0, state: State | None = None
) -> dict[str, Any]:
    user.require(Action.VIEW)
    return report.runs_page(project_app(request, project, user), limit=limit, offset=offset, state=state)


@router.post("/projects/{project}/runs", status_code=202, summary="Start a pipeline run (driven by the server)")
def start_run(request: Request, project: str, body: StartRun, user: User) -> dict[str, Any]:
    app = project_app(request, project, user)
    user.require_each(Action.DEPLOY, accounts.pipeline_environments(app.config.project))
    freeze = _override_freeze(user, body.override_freeze, accounts.pipeline_environments(app.config.project))
    older = body.allow_older_reason
    run = pipeline.create_run(app, rev=body.commit, allow_dirty=body.allow_dirty, allow_older=older)
    return drive(
        request, project, user, run.id,
        lambda a: pipeline.continue_run(a, run.id, allow_older=older, override_freeze=freeze),
    )


@router.get("/projects/{project}/runs/{run_id}", summary="One run: stages, artifact, approvals")
def get_run(request: Request, project: str, run_id: int, user: User) -> dict[str, Any]:
    user.require(Action.VIEW)
    return report.run_view(project_app(request, project, user), run_id)


@router.get("/projects/{project}/runs/{run_id}/logs", summary="Every step of a run with its output")
def logs(request: Request, project: str, run_id: int, user: User, stage: str | None = None) -> dict[str, Any]:
    user.require(Action.VIEW)
    app = project_app(request, project, user)
    report.project_run(app, run_id)  # 404 for another project's run
    found = run_logs(app, run_id, stage=stage)
    return {"run_id": run_id, "stage": stage, "steps": [report.step_dict(s.stage, s.step) for s in found.steps]}


@router.post("/projects/{project}/runs/{run_id}/approve", status_code=202, summary="Approve the gate a run waits at")
def approve(request: Request, project: str, run_id: int, body: Decide, user: User) -> dict[str, Any]:
    app = project_app(request, project, user)
    _require_gate(app, run_id, user)
    ahead = accounts.run_environments_ahead(app.store.get_run(run_id))
    freeze = _override_freeze(user, body.override_freeze, ahead)
    older = pipeline.record_approval(app, run_id, reason=body.reason, allow_older=body.allow_older)
    return drive(
        request, project, user, run_id,
        lambda a: pipeline.continue_run(a, run_id, allow_older=older, override_freeze=freeze),
    )


@router.post("/projects/{project}/runs/{run_id}/reject", summary="Reject the gate a run waits at")
def reject(request: Request, project: str, run_id: int, body: Decide, user: User) -> dict[str, Any]:
    app = project_app(request, project, user)
    _require_gate(app, run_id, user)
    if pipeline.record_rejection(app, run_id, reason=body.reason) is None:  # a parked canary goes back
        return drive(request, project, user, run_id, lambda a: pipeline.finish_rejected_canary(a, run_id))
    return report.run_view(app, run_id)


def _override_freeze(user: Principal, reason: str | None, environments: Sequence[str]) -> str | None:
    """``reason``, after a 403 unless ``user`` is an admin of every environment the override may deploy to."""
    if reason is not None:
        user.require_each(Action.ADMIN, environments)
        pipeline.check_freeze_override(reason)
    return reason


def _require_gate(app: App, run_id: int, user: Principal) -> None:
    """404 for another project's run, 409 for one not waiting, then 403 unless ``user`` may decide its gate."""
    report.project_run(app, run_id)
    run, _gate = pipeline.waiting_gate(app, run_id)
    user.require_each(Action.APPROVE, accounts.run_environments_ahead(run))


@router.post("/projects/{project}/runs/{run_id}/resume", status_code=202, summary="Resume an interrupted run")
def resume(request: Request, project: str, run_id: int, user: User) -> dict[str, Any]:
    app = project_app(request, project, user)
    run = report.project_run(app, run_id)
    recovery.check_resumable(run)
    user.require_each(Action.DEPLOY, accounts.run_environments_ahead(run))
    return drive(request, project, user, run_id, lambda a: pipeline.resume(a, run_id))


@router.post("/projects/{project}/promotions", status_code=202, summary="Deploy a built artifact to an environment")
def promote(request: Request, project: str, body: Promote, user: User) -> dict[str, Any]:
    app = project_app(request, project, user)
    require_environment(app, body.environment)
    user.require(Action.DEPLOY, body.environment)
    freeze = _override_freeze(user, body.override_freeze, [body.environment])
    older = body.allow_older_reason
    run_id = pipeline.create_promotion(app, body.digest, environment=body.environment, allow_older=older)
    return drive(
        request, project, user, run_id,
        lambda a: pipeline.continue_run(a, run_id, allow_older=older, override_freeze=freeze),
    )


@router.get("/projects/{project}/environments", summary="Environments with what runs there")
def environments(request: Request, project: str, user: User) -> list[dict[str, Any]]:
    user.require(Action.VIEW)
    data: list[dict[str, Any]] = report.status(project_app(request, project, user))["environments"]
    return data


@router.get("/projects/{project}/deployments", summary="Deployments, newest first (paginated)")
def deployments(
    request: Request, project: str, user: User, environment: str | None = None, limit: Limit = 20, offset: Offset = 0
) -> dict[str, Any]:
    user.require(Action.VIEW)
    app = project_app(request, project, user)
    if environment is not None:
        require_environment(app, environment)
    return report.deployments_page(app, environment, limit=limit, offset=offset)


@router.post(
    "/projects/{project}/environments/{environment}/rollback", status_code=202, summary="Roll an environment back"
)
async def rollback(request: Request, project: str, environment: str, body: Rollback, user: User) -> dict[str, Any]:
    app = project_app(request, project, user)
    require_environment(app, environment)
    user.require(Action.ROLLBACK, environment)
    run_id, release = await pipeline.create_rollback(app, environment, to_release=body.to_release, reason=body.reason)
    work = lambda a: pipeline.drive_rollback(a, run_id, release_id=release, reason=body.reason)  # noqa: E731
    return drive(request, project, user, run_id, work)


@router.post("/projects/{project}/environments/{environment}/unlock", summary="Remove an environment's lock")
def unlock(request: Request, project: str, environment: str, body: Unlock, user: User) -> dict[str, Any]:
    app = project_app(request, project, user)
    require_environment(app, environment)
    user.require(Action.ADMIN if body.force else Action.UNLOCK, environment)
    return {"environment": environment, "removed": recovery.unlock(app, environment, force=body.force)}


@router.get("/projects/{project}/audit", summary="The audit log, newest first (paginated)")
def audit(request: Request, project: str, user: User, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    user.require(Action.VIEW)
    return report.audit_page(project_app(request, project, user), limit=limit, offset=offset)


@router.get("/projects/{project}/breakers", summary="Circuit breakers of external services")
def list_breakers(request: Request, project: str, user: User) -> list[dict[str, Any]]:
    user.require(Action.VIEW)
    return breakers.list_breakers(project_app(request, project, user))


@router.post("/projects/{project}/breakers/{name}/reset", summary="Close a circuit breaker")
def reset_breaker(request: Request, project: str, name: str, user: User) -> dict[str, Any]:
    user.require(Action.ADMIN)
    return breakers.reset_breaker(project_app(request, project, user), name)


@router.get("/approvals", summary="Runs waiting for approval, in every project (paginated)")
def awaiting_approval(request: Request, user: User, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
    user.require(Action.VIEW)
    hub = hub_of(request)
    found = report.waiting_page({name: hub.project(name) for name in hub.projects}, limit=limit, offset=offset)
    for item in found["items"]:
        item["you_may_approve"] = user.may_each(Action.APPROVE, item["environments"])
    return found
