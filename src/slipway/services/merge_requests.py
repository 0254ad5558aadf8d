"""Merge requests from a forge's webhook: build and test the merge result, bring up its review environment,
tell the forge how it went (a commit status on the request's head), and tear the environment down when the
request is merged or closed (services/review.py does the work; this is the forge's side of it).
"""

from __future__ import annotations

from slipway.errors import SlipwayError
from slipway.model.states import State
from slipway.model.triggers import Forge, MergeRequest, Received, TriggerSpec, merge_request_ref
from slipway.services import forge as forges
from slipway.services import pipeline, review
from slipway.services.app import App
from slipway.services.mirror import TRUNK_REFS, fetching, git_credentials
from slipway.vcs import fetch, parent_commit

#: Where a request's head is kept in the project's repository.
HEAD_REFS = "refs/slipway/merge-requests/{number}/head"


def handle(app: App, forge: Forge, event: MergeRequest, triggers: TriggerSpec) -> Received:
    """What a merge-request event starts: a run for new code (``started``), a teardown when the request is
    over (``closing``: the caller runs :func:`close`), or nothing."""
    if event.closes:
        return Received("closing", f"merge request {event.number} was {event.action}: its review environment "
                        "is torn down", teardown=event.number)
    if not event.builds:
        return Received("ignored", f"merge request {event.number}: nothing to build ({event.action})")
    head_ref = HEAD_REFS.format(number=event.number)
    target_ref = f"{TRUNK_REFS}{event.target_branch}"
    actor = f"{forge.value} merge request {event.number}"
    acting = app.acting_as(actor, observer=app.observer)
    with fetching(app):  # the fetched refs and the merge result's ref, one event at a time
        with git_credentials(app, triggers) as env:
            fetch(app.root, triggers.remote, [f"+{merge_request_ref(forge, event.number)}:{head_ref}",
                                              f"+refs/heads/{event.target_branch}:{target_ref}"], env=env)
        run = review.open_or_update(acting, number=event.number, head=event.head, target=target_ref,
                                    branch=event.source_branch)
    forges.report_status(acting, triggers, commit=event.head, state="pending",
                         description=f"run {run.id}: build and test the merge result", run_id=run.id)
    return Received("started", f"run {run.id} for merge request {event.number} (commit {event.head[:12]})", run.id)


async def drive(app: App, run_id: int) -> pipeline.RunOutcome | None:
    """Drive a merge-request run, then set the request head's commit status to how it ended."""
    run = app.store.get_run(run_id)
    head = parent_commit(app.root, run.commit, 2)  # the merge result's second parent: the request's head
    triggers = app.config.project.triggers
    try:
        outcome = await pipeline.continue_run(app, run_id)
    except SlipwayError as exc:
        if triggers is not None:
            why = app.store.get_run(run_id).error or exc.message.splitlines()[0]
            forges.report_status(app, triggers, commit=head, state="failure",
                                 description=f"run {run_id} failed: {why}", run_id=run_id)
        raise
    if triggers is not None:
        ok = outcome.state is State.SUCCEEDED
        record = app.store.get_review(run.project, run.merge_request) if run.merge_request else None
        where = f"; review at {record.url}" if ok and record is not None and record.url else ""
        forges.report_status(app, triggers, commit=head, state="success" if ok else "failure",
                             description=f"run {run_id} {outcome.state.value}{where}", run_id=run_id)
    return outcome


async def close(app: App, number: int, *, reason: str) -> None:
    """Tear the request's review environment down (a failure is logged by the caller)."""
    await review.close(app, number, reason=reason)
