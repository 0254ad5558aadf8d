"""Merge requests: a run of the pipeline's build and test stages on the merge result, then a deploy of its
artifact to the request's review environment; the environment's teardown when the request is merged or
closed, or once its TTL passed (docs/triggers.md, "Review environments").

What a webhook handler calls: :func:`open_or_update` when a request is opened or pushed to (it records the
run; the caller drives it with :func:`slipway.services.pipeline.continue_run`), :func:`close` when it is
merged or closed, and :func:`expire` from a poller. ``slipway review up|down|expire`` compose the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from slipway.config import LoadedConfig, parse_config
from slipway.errors import ConfigError, SlipwayError
from slipway.model.config import Project
from slipway.model.records import RunRecord
from slipway.model.review import ReviewRecord, ReviewState, ReviewUpdate, review_name
from slipway.model.states import RunKind, StageKind, State
from slipway.services import pipeline
from slipway.services.app import App
from slipway.services.releases import environment_url
from slipway.services.review_env import check_template, with_review
from slipway.services.review_teardown import Teardown, tear_down
from slipway.services.secrets import require_secrets
from slipway.services.source import committed_config
from slipway.vcs import check_commit_links, merge_result, resolve_commit


def open_or_update(app: App, *, number: int, head: str, target: str, branch: str = "") -> RunRecord:
    """Record a pending merge-request run for request ``number`` (its ``head`` commit merged into ``target``,
    a ref or commit in the project's repository) and, when its slipway.yml has a ``review:`` template, the
    request's review environment as open. The caller drives the run (:func:`pipeline.continue_run`).

    The merge result is made without touching the working tree and kept as refs/slipway/merge-requests/N/merge;
    the run follows *its* slipway.yml (not the working tree's: a request changes the pipeline it is tested with).
    The run has the pipeline's build and test stages and one deploy stage, ``deploy-review-<N>``, and nothing
    else: no deploy to another environment and no approval gate.
    """
    if number < 1:
        raise ConfigError(f"merge request number {number} must be 1 or more", hint="pass the request's number")
    head_commit = resolve_commit(app.root, head)
    commit = merge_result(app.root, number=number, head=head_commit, target=target)
    loaded = merge_config(app, commit, number=number)
    if loaded.project.review is not None:
        check_template(loaded)
        loaded = with_review(loaded, number, branch=branch)
        require_secrets(loaded, [review_name(number)], environ=app.environ, what=f"review environment {number}")
    check_commit_links(app.root, commit)
    run_id = app.store.create_run(
        project=loaded.project.name,
        kind=RunKind.MERGE_REQUEST,
        commit=commit,
        triggered_by=app.settings.actor,
        config_text=loaded.text,
        config_path=str(app.config.path),
        stages=merge_request_stages(loaded.project, number),
        merge_request=number,
    )
    if loaded.project.review is not None:
        name = review_name(number)
        update = ReviewUpdate(
            project=loaded.project.name, number=number, environment=name, branch=branch, target=target,
            head_commit=head_commit, merge_commit=commit,
            url=environment_url(loaded.project, name), run_id=run_id, at=app.clock.now(),
        )
        app.store.open_review(update, actor=app.settings.actor)
    return app.store.get_run(run_id)


def merge_config(app: App, commit: str, *, number: int) -> LoadedConfig:
    """The slipway.yml of merge result ``commit``: what the run follows, said out loud."""
    source = committed_config(app, commit)
    if source.text is None:
        raise ConfigError(
            f"the merge result of request {number} (commit {commit[:12]}) has no {source.path_in_repo}",
            hint="the target branch or the request must hold slipway.yml",
        )
    app.observer.message(
        f"pipeline: {source.describe()}, the merge result of request {number} (a merge request follows its own "
        "slipway.yml; the working tree's is not compared)"
    )
    return parse_config(source.text, path=app.config.path)


def merge_request_stages(project: Project, number: int) -> list[tuple[str, StageKind, str | None]]:
    """The pipeline's build and test stages in order, then the deploy to ``review-<N>`` when there is a template."""
    stages: list[tuple[str, StageKind, str | None]] = [
        (s.name, s.kind, None) for s in project.pipeline if s.kind in (StageKind.BUILD, StageKind.TEST)
    ]
    if project.review is not None:
        name = review_name(number)
        stages.append((f"deploy-{name}", StageKind.DEPLOY, name))
    return stages


@dataclass(frozen=True)
class ReviewUp:
    """How ``slipway review up`` left a request: its run's outcome and its review environment (if any)."""

    outcome: pipeline.RunOutcome
    review: ReviewRecord | None


async def up(app: App, *, number: int, head: str, target: str, branch: str = "") -> ReviewUp:
    """:func:`open_or_update` then drive the run; prints the review environment's URL once it is deployed."""
    run = open_or_update(app, number=number, head=head, target=target, branch=branch)
    outcome = await pipeline.continue_run(app, run.id)
    record = app.store.get_review(run.project, number)
    if record is not None and outcome.state is State.SUCCEEDED:
        app.observer.message(f"{record.environment} is up" + (f" at {record.url}" if record.url else ""))
    return ReviewUp(outcome, record)


async def close(app: App, number: int, *, reason: str) -> Teardown:
    """Tear down request ``number``'s review environment (the request was merged or closed): teardown
    commands, deploy roots, SQLite database, lock; the records are kept and it is recorded closed with
    ``reason``. A second close changes nothing and says so (``Teardown.already_closed``)."""
    if not reason.strip():
        raise ConfigError("a reason is required to close a review environment", hint="pass --reason TEXT (merged, closed ...)")
    record = app.store.get_review(app.config.project.name, number)
    if record is None or not record.is_open:
        why = "has no review environment" if record is None else f"was closed already ({_closed_text(record)})"
        app.observer.message(f"merge request {number} {why}: nothing to do")
        return Teardown(environment=review_name(number), already_closed=True)
    return await tear_down(app, record, reason=reason)


def _closed_text(record: ReviewRecord) -> str:
    return f"by {record.closed_by}: {record.close_reason}"


async def expire(app: App) -> list[Teardown]:
    """Tear down every open review environment not updated for longer than its template's ``ttl`` (on
    ``App.clock``); what a server's poller calls. Returns what was torn down."""
    now = app.clock.now()
    done = []
    for record in app.store.reviews(app.config.project.name, state=ReviewState.OPEN):
        ttl = _ttl_of(app, record)
        if ttl is None or now - record.updated_at <= ttl:
            continue
        hours = (now - record.updated_at) / 3600
        reason = f"expired: not updated for {hours:.1f} h (ttl {ttl / 3600:g} h)"
        try:
            done.append(await tear_down(app, record, reason=reason))
        except SlipwayError as exc:  # e.g. a deployment of it runs (LockHeld): the others still go, it stays open
            app.observer.message(f"warning: {record.environment} expired but was not torn down: {exc}")
            done.append(Teardown(record.environment, problems=(str(exc),), complete=False))
    return done


def _ttl_of(app: App, record: ReviewRecord) -> float | None:
    """The TTL in seconds of the template the environment was last deployed with (else the working tree's)."""
    project = app.config.project
    if record.run_id is not None:
        run = app.store.get_run(record.run_id)
        project = app.config_of(run.config_text, run.config_path).project
    delta = project.review.ttl_delta if project.review is not None else None
    return delta.total_seconds() if delta is not None else None


def list_reviews(app: App) -> list[dict[str, object]]:
    """Every review environment of the project, open and closed, as JSON-ready rows."""
    return [
        {
            "number": r.number, "environment": r.environment, "state": r.state.value, "branch": r.branch,
            "target": r.target, "head_commit": r.head_commit, "merge_commit": r.merge_commit, "url": r.url,
            "run_id": r.run_id, "opened_at": r.opened_at, "updated_at": r.updated_at, "closed_at": r.closed_at,
            "closed_by": r.closed_by, "close_reason": r.close_reason,
        }
        for r in app.store.reviews(app.config.project.name)
    ]
