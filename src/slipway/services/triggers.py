"""Runs nobody typed: a forge's webhook or a poll of the remote finds a new trunk commit and starts its run.

The commit is fetched from the ``triggers.remote`` into the project's own repository (refs under
``refs/slipway/``), which is the mirror the server keeps: runs build from it exactly as they build a commit
a person made. Each trunk commit runs once: a commit that already has a pipeline run starts nothing, a
delivery id seen before starts nothing (a replay), and a delivery that is not authentic is refused (401)
and recorded in the audit log. Merge-request events go to :mod:`slipway.services.merge_requests`.
"""

from __future__ import annotations

from collections.abc import Mapping

from slipway.errors import ConfigError, NotAuthenticated, NotFound, SlipwayError
from slipway.model.records import RunRecord
from slipway.model.states import RunKind
from slipway.model.triggers import (
    BadDelivery,
    Forge,
    MergeRequest,
    Other,
    Push,
    Received,
    TriggerSpec,
    delivery_id,
    parse_event,
    verify,
)
from slipway.services import merge_requests, pipeline
from slipway.services.app import App
from slipway.services.mirror import TRUNK_REFS, fetching, git_credentials, secret
from slipway.vcs import fetch, has_commit, remote_head

#: The ``forge`` of the deliveries a poll records (one per new commit seen).
POLL = "poll"


def spec(app: App) -> TriggerSpec:
    """The project's ``triggers:``; ConfigError when it has none."""
    triggers = app.config.project.triggers
    if triggers is None:
        raise ConfigError(
            f"{app.config.path} has no 'triggers:'",
            hint="add 'triggers: {branch: main, remote: origin}' (docs/triggers.md)",
        )
    return triggers


def receive(app: App, forge: Forge, headers: Mapping[str, str], body: bytes, *, source: str) -> Received:
    """Handle one webhook delivery (``headers`` by lower-case name, ``body`` the raw bytes as received).

    NotAuthenticated (401) when the signature or token is wrong or missing, recorded as ``webhook.refused``;
    NotFound when the project takes no webhooks. A delivery id seen before starts nothing.
    """
    triggers = app.config.project.triggers
    project = app.config.project.name
    if triggers is None or triggers.webhook_secret is None:
        raise NotFound(
            f"project {project} takes no webhooks: its slipway.yml has no triggers.webhook_secret",
            hint="set triggers.webhook_secret to the secret the forge signs with (docs/triggers.md)",
        )
    why = verify(forge, headers, body, secret(app, "webhook_secret", triggers))
    if why is not None:
        app.store.audit(f"{forge.value} webhook", "webhook.refused", f"project {project}", {"why": why, "from": source})
        raise NotAuthenticated(
            f"webhook delivery refused: {why}",
            hint="the forge's webhook secret must be the value of triggers.webhook_secret",
        )
    delivery = delivery_id(forge, headers, body)
    try:
        event = parse_event(forge, headers, body)
    except BadDelivery as exc:
        raise ConfigError(f"webhook delivery {delivery}: {exc}", hint="send the forge's own JSON body") from None
    name = type(event).__name__.lower()
    row = app.store.claim_delivery(project=project, forge=forge.value, delivery_id=delivery, event=name)
    if row is None:
        app.store.audit(f"{forge.value} webhook", "webhook.replayed", f"project {project}", {"delivery": delivery})
        return Received("replayed", f"delivery {delivery} was received before: nothing runs again")
    try:
        received = _act(app, forge, event, triggers)
    except SlipwayError as exc:
        app.store.finish_delivery(row, outcome="failed", detail=exc.message)
        raise
    app.store.finish_delivery(row, outcome=received.outcome, detail=received.message, run_id=received.run_id)
    return received


def _act(app: App, forge: Forge, event: Push | MergeRequest | Other, triggers: TriggerSpec) -> Received:
    if isinstance(event, Other):
        return Received("ignored", f"{event.event}: {event.why}")
    if isinstance(event, MergeRequest):
        return merge_requests.handle(app, forge, event, triggers)
    if event.branch != triggers.branch:
        return Received("ignored", f"a push to {event.branch}; runs start for pushes to {triggers.branch}")
    if event.commit is None:
        return Received("ignored", f"{event.branch} was deleted")
    actor = f"{forge.value} push" + (f" by {event.pusher}" if event.pusher else "")
    run = start_for_commit(app.acting_as(actor[:100], observer=app.observer), event.commit, triggers)
    if run is None:
        return Received("ignored", f"commit {event.commit[:12]} already has a run")
    return Received("started", f"run {run.id} for commit {event.commit[:12]}", run.id)


def start_for_commit(app: App, commit: str, triggers: TriggerSpec) -> RunRecord | None:
    """Fetch the trunk and record a pending run for ``commit`` (driven by the caller); None when the commit
    already has a pipeline run (each trunk commit runs once)."""
    branch = triggers.branch
    with fetching(app), git_credentials(app, triggers) as env:
        fetch(app.root, triggers.remote, [f"+refs/heads/{branch}:{TRUNK_REFS}{branch}"], env=env)
    if not has_commit(app.root, commit):
        raise SlipwayError(
            f"commit {commit[:12]} is not in {triggers.remote} after fetching {branch}",
            hint=f"check that triggers.remote ({triggers.remote}) is the repository the forge sends events for",
        )
    earlier = [r for r in app.store.list_runs(limit=20, project=app.config.project.name, commit=commit)
               if r.kind is RunKind.PIPELINE]
    if earlier:
        return None
    return pipeline.create_run(app, rev=commit, pushed=True)


def poll_once(app: App) -> Received:
    """Ask the remote for the trunk's head (``git ls-remote``); start a run when it is a commit not seen before."""
    triggers = spec(app)
    ref = f"refs/heads/{triggers.branch}"
    with git_credentials(app, triggers) as env:
        head = remote_head(app.root, triggers.remote, ref, env=env)
    if head is None:
        raise ConfigError(
            f"{triggers.remote} has no branch {triggers.branch}",
            hint="set triggers.branch to the trunk's name, and triggers.remote to the team's repository",
        )
    row = app.store.claim_delivery(project=app.config.project.name, forge=POLL, delivery_id=head, event="push")
    if row is None:
        return Received("ignored", f"{triggers.branch} is still at {head[:12]}")
    try:
        run = start_for_commit(app.acting_as("poll", observer=app.observer), head, triggers)
    except SlipwayError as exc:
        app.store.finish_delivery(row, outcome="failed", detail=exc.message)
        raise
    if run is None:
        app.store.finish_delivery(row, outcome="ignored", detail=f"commit {head[:12]} already has a run")
        return Received("ignored", f"commit {head[:12]} already has a run")
    app.store.finish_delivery(row, outcome="started", detail=f"run {run.id}", run_id=run.id)
    return Received("started", f"run {run.id} for commit {head[:12]}", run.id)


async def watch(app: App, *, interval: float | None = None, once: bool = False) -> list[int]:
    """``slipway watch``: poll the remote every ``interval`` seconds (default ``triggers.poll_interval``, else
    60) and drive the run of each new trunk commit in this process until it ends or waits at a gate. A
    failed run or an unreachable remote is reported and watching goes on; a signal stops it (the run it
    drives is cancelled as ``slipway run``'s would be). ``once``: one poll. Returns the runs it started."""
    triggers = spec(app)
    every = interval or triggers.poll_interval or 60.0
    started: list[int] = []
    app.observer.message(f"watching {triggers.remote} {triggers.branch} every {every:g} s")
    while True:
        try:
            received = poll_once(app)
        except SlipwayError as exc:
            if once:
                raise
            app.observer.message(f"warning: polling failed: {exc.message}")
        else:
            if received.run_id is not None:
                started.append(received.run_id)
                app.observer.message(f"{triggers.branch} moved: {received.message}")
                await _drive(app, received.run_id)
        if once:
            return started
        await app.clock.sleep(every)


async def _drive(app: App, run_id: int) -> None:
    actor = app.store.get_run(run_id).triggered_by
    try:
        outcome = await pipeline.continue_run(app.acting_as(actor, observer=app.observer), run_id)
    except SlipwayError as exc:
        app.observer.message(f"run {run_id} failed: {exc.message.splitlines()[0]}")
        return
    app.observer.message(f"run {run_id} {outcome.state.value}")


def deliveries(app: App, *, limit: int = 50) -> list[dict[str, object]]:
    """The newest authentic deliveries and polls of the project, and what came of each (refused ones are in
    the audit log as ``webhook.refused``)."""
    return [
        {"id": d.id, "forge": d.forge, "delivery": d.delivery_id, "event": d.event, "received_at": d.received_at,
         "outcome": d.outcome, "detail": d.detail, "run": d.run_id}
        for d in app.store.deliveries(project=app.config.project.name, limit=limit)
    ]
