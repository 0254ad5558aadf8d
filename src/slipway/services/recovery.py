"""Recovery: what the next command does after a crash, a signal or a store outage (docs/guarantees.md).

- Every process that drives a run holds the lock ``run N`` (and ``environment E`` while it deploys);
  a holder names its pid, machine and start time (:mod:`slipway.processes`).
- Opening the store *reconciles* it (services/reconcile.py): journalled writes are replayed
  (store/journal.py), then every lock whose holder is provably dead on this machine is taken over
  (audited ``lock.takeover``) and the run it drove is recorded ``interrupted``, with its running stages,
  steps and deployments.
- ``resume`` drives an interrupted or cancelled run on from its first stage that did not finish.
- ``unlock`` refuses a live holder unless forced; both are audited.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slipway.errors import LockHeld, StateError
from slipway.model.records import RunRecord
from slipway.model.states import RESUMABLE, DeploymentKind, RunKind, State
from slipway.services.app import App
from slipway.services.reconcile import RUN_LOCK as RUN_LOCK
from slipway.services.reconcile import RUN_LOCK_TTL as RUN_LOCK_TTL
from slipway.services.reconcile import holder_is_dead as holder_is_dead
from slipway.services.reconcile import holder_text as holder_text
from slipway.services.reconcile import reconcile as reconcile


@contextmanager
def driving(app: App, run_id: int) -> Iterator[None]:
    """Hold ``run N`` while this process drives the run, so that a crash is found by the next command."""
    name, holder = f"{RUN_LOCK}{run_id}", holder_text(app.settings.actor, run_id=run_id)
    app.store.acquire_lock(name, holder, ttl=RUN_LOCK_TTL, is_dead=holder_is_dead)
    try:
        yield
    finally:
        app.store.release_lock(name, holder)


def check_resumable(run: RunRecord) -> None:
    """StateError unless ``run`` is interrupted or cancelled."""
    if run.state not in RESUMABLE:
        raise StateError(
            f"run {run.id} is {run.state.value}; only an interrupted or cancelled run can be resumed",
            hint="'slipway history' shows each run's state; a waiting run goes on with 'slipway approve'",
        )


def prepare_resume(app: App, run_id: int) -> None:
    """Check that a run can be resumed, and put its stopped stages back to pending and the run to running."""
    store = app.store
    run = store.get_run(run_id)
    check_resumable(run)
    for stage in run.stages:
        if stage.state in RESUMABLE:
            store.set_stage_state(stage.id, State.PENDING)
    store.set_run_state(run_id, State.RUNNING, actor=app.settings.actor)
    store.audit(app.settings.actor, "run.resume", f"run {run_id}", {"was": run.state.value})


def single_deployment_of(app: App, run_id: int) -> tuple[DeploymentKind, str | None, str | None]:
    """A promote or rollback run's deployment: its kind, the release a rollback goes to, and the reason."""
    run = app.store.get_run(run_id)
    if run.kind is RunKind.PROMOTE:
        return DeploymentKind.DEPLOY, None, None
    environment = run.stages[0].environment
    found = next((d for d in app.store.deployments(environment, limit=200) if d.run_id == run_id), None)
    if found is None:
        raise StateError(
            f"run {run_id} has no deployment to resume", hint=f"roll back again: 'slipway rollback {environment}'"
        )
    return found.kind, found.release_id, found.reason


def unlock(app: App, environment: str, *, force: bool) -> bool:
    """Remove an environment's lock; a live holder only with ``force``. Audited. True if one was removed."""
    store, name = app.store, f"environment {environment}"
    held = next((lock for lock in store.locks() if lock.name == name), None)
    if held is None:
        return False
    alive = not holder_is_dead(held.holder)
    if alive and not force:
        raise LockHeld(
            f"{name} is held by {held.holder}, which is alive (or runs on another machine)",
            hint="let it finish; if you are sure nothing deploys there any more, 'slipway unlock "
            f"{environment} --force' (recorded in the audit log)",
        )
    removed = store.release_lock(name, held.holder)
    store.audit(app.settings.actor, "lock.remove", name, {"removed": removed, "holder": held.holder, "forced": alive})
    return bool(removed)
