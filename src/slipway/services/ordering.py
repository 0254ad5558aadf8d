"""Environments move forward: an older artifact is not deployed over a newer one unless a person says so,
and a newer run supersedes older runs still waiting at a gate or queued for the same environment, unless
slipway.yml's ``queue.supersede`` is false (docs/config.md, "Newer and older" and "queue").

Older: when the repository knows both commits, the candidate's commit is an ancestor of the commit the
environment runs (a commit on a diverged branch is neither older nor newer). Otherwise, the candidate's
artifact was built before the running one (the store's build times). The same commit or the same digest
is never older. Rollback does not pass through here: it is the way back.
"""

from __future__ import annotations

from slipway.errors import GateError
from slipway.model.queue import QueuePolicy
from slipway.model.records import RunRecord, StageRecord
from slipway.model.states import RunKind, StageKind, State
from slipway.services.app import App
from slipway.vcs import is_ancestor


def older_because(app: App, *, commit: str, digest: str | None, running_commit: str, running_digest: str) -> str | None:
    """Why the candidate (``commit``, ``digest``) is older than what runs; None when it is not."""
    if commit == running_commit or digest == running_digest:
        return None
    ancestry = is_ancestor(app.root, commit, running_commit)
    if ancestry is not None:
        return f"commit {commit[:12]} is an ancestor of {running_commit[:12]}" if ancestry else None
    candidate = app.store.get_artifact(digest) if digest else None
    running = app.store.get_artifact(running_digest)
    if candidate and running and candidate.built_at < running.built_at:
        return f"artifact {digest[:19] if digest else ''} was built before {running_digest[:19]}"
    return None


def check_not_older(
    app: App, environment: str, *, commit: str, digest: str | None, allow_older: str | None, run_id: int | None
) -> str | None:
    """GateError when deploying ``commit`` to ``environment`` would move it backwards, unless ``allow_older``
    (the person's reason) is given: then the override goes to the audit log and its text is returned for
    the deployment's record. None when the candidate is not older."""
    for host in {(h.commit, h.artifact_digest, h.run_id) for h in app.store.host_releases(environment)}:
        why = older_because(app, commit=commit, digest=digest, running_commit=host[0], running_digest=host[1])
        if why is None:
            continue
        runs = f"{environment} runs commit {host[0][:12]}" + (f" (run {host[2]})" if host[2] else "")
        if allow_older is None:
            raise GateError(
                f"{runs}; deploying commit {commit[:12]} would move it backwards: {why}",
                hint=f"approve or run something newer; 'slipway rollback {environment}' is the way back; to deploy "
                "this one deliberately, add --allow-older --reason TEXT",
            )
        app.store.audit(
            app.settings.actor,
            "deployment.allow-older",
            f"environment {environment}",
            {"run": run_id, "commit": commit, "digest": digest, "running": host[0], "why": why, "reason": allow_older},
        )
        app.observer.message(f"warning: {runs}, newer than {commit[:12]} ({why}): deployed anyway (--allow-older)")
        return f"older than {host[0][:12]}, deployed with --allow-older by {app.settings.actor}: {allow_older}"
    return None


def check_pipeline_not_older(
    app: App, environments: list[str], *, commit: str, digest: str | None, allow_older: str | None
) -> None:
    """Before a run starts or continues: refuse when a deploy it would make moves an environment backwards."""
    if allow_older is not None:
        return  # each deployment records the override when it happens
    for environment in environments:
        check_not_older(app, environment, commit=commit, digest=digest, allow_older=None, run_id=None)


def supersede_waiting(
    app: App, run: RunRecord, *, policy: QueuePolicy, gate: str | None = None, environment: str | None = None
) -> None:
    """Record as superseded every older pipeline run of the project waiting at an approval gate that
    ``run`` has now reached (``gate``, by name), or beyond which it has deployed ``environment``; nothing
    when ``run``'s pipeline says ``queue: {supersede: false}``."""
    if run.kind is not RunKind.PIPELINE or not policy.supersede:
        return
    for other in app.store.runs_in_state(State.WAITING, project=run.project):
        waiting = _waiting_approval(other)
        if other.kind is not RunKind.PIPELINE or waiting is None or not newer(app, run, other.id, other.commit):
            continue
        if gate is not None and waiting.name == gate:
            why = f"run {run.id} (commit {run.commit[:12]}) reached the same gate {gate}"
        elif environment is not None and any(
            s.kind is StageKind.DEPLOY and s.environment == environment and s.index > waiting.index
            for s in other.stages
        ):
            why = f"run {run.id} (commit {run.commit[:12]}) deployed {environment}, which this run would deploy next"
        else:
            continue
        _supersede(app, run, other.id, other.commit, why)


def supersede_queued(app: App, run: RunRecord, *, environment: str) -> int | None:
    """Record as superseded every pipeline run of the project queued for ``environment`` that is older than
    ``run`` (a pipeline run too), which has now joined the queue: only the newest commit waits to go out.
    Returns the id of a queued run that is *newer* than ``run`` (its commit descends from ``run``'s: the
    deliveries of two pushes can arrive in either order), for the caller to supersede ``run`` instead."""
    if run.kind is not RunKind.PIPELINE:
        return None
    newest: int | None = None
    for other in app.store.queued_runs(run.project):
        if other.run_id == run.id or other.kind is not RunKind.PIPELINE or other.environment != environment:
            continue
        if newer(app, run, other.run_id, other.commit):
            why = f"run {run.id} (commit {run.commit[:12]}) is queued for {environment} after it"
            _supersede(app, run, other.run_id, other.commit, why)
        else:
            newest = other.run_id
    return newest


def newer(app: App, run: RunRecord, other_id: int, other_commit: str) -> bool:
    """Whether ``run`` is newer than run ``other_id``: its commit descends from the other's; for the same
    commit, or commits git cannot order (diverged, unknown), the run started later is newer."""
    if run.commit != other_commit:
        if is_ancestor(app.root, other_commit, run.commit):
            return True
        if is_ancestor(app.root, run.commit, other_commit):
            return False
    return run.id > other_id


def _supersede(app: App, run: RunRecord, other: int, commit: str, why: str) -> None:
    """Record ``other`` superseded by ``run`` (unless it moved on meanwhile) and say so."""
    if app.store.supersede_run(other, reason=f"superseded by run {run.id}: {why}", actor=app.settings.actor):
        app.observer.message(f"run {other} (commit {commit[:12]}) is superseded: {why}")


def _waiting_approval(run: RunRecord) -> StageRecord | None:
    return next((s for s in run.stages if s.state is State.WAITING and s.kind is StageKind.APPROVAL), None)
