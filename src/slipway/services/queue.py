"""The queue of a busy environment: a deploy stage waits for its turn instead of failing (docs/triggers.md,
"Queues and superseding").

A deploy stage whose environment another process holds (the environment lock, services/envlock.py), or
for which an older run is already queued, records its run and itself ``queued`` and polls on the App's
clock. Its turn comes when no older live run is queued for the environment and it takes the environment
lock; it keeps the lock into the deployment (whose own ``environment_lock`` takes it again as the same
holder), so no other process slips in between. Joining the queue supersedes older pipeline runs queued for
the same environment (services/ordering.py) unless slipway.yml's ``queue.supersede`` is false. The wait
is bounded by the stage's timeout; a signal, the timeout or any error put the run back to ``running``
first, so the runner records it cancelled or failed as from any other stage.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from slipway.errors import LockHeld, StateError, StoreError
from slipway.model.config import Project
from slipway.model.records import LockRecord, RunRecord
from slipway.model.states import State
from slipway.services import ordering
from slipway.services.app import App
from slipway.services.envlock import LOCK_TTL, lock_name
from slipway.services.reconcile import RUN_LOCK, holder_is_dead, holder_text

#: Seconds between two looks at the lock and the queue.
POLL = 0.5


@dataclass(frozen=True)
class Ahead:
    """What a queued run waits behind: the live holder of the environment lock, and older queued runs."""

    holder: str | None
    queued: tuple[int, ...]

    def describe(self) -> str:
        """``run 7 (deploying: tester (run 7, pid ...))``-like words for messages."""
        parts = [f"run {i} (queued)" for i in self.queued]
        if self.holder is not None:
            parts.insert(0, f"the deployment of {self.holder}")
        return " and ".join(parts) or "a deployment that has just started"


async def wait_turn(
    app: App, project: Project, run: RunRecord, *, environment: str, stage_id: int, timeout: float
) -> bool:
    """Hold ``environment``'s lock and return True once it is ``run``'s turn (at once when nothing is
    ahead); False when a newer run superseded it while it waited (recorded; nothing was deployed).
    LockHeld after ``timeout`` seconds in the queue, naming what is still ahead."""
    started, queued = app.clock.monotonic(), False
    try:
        while True:
            ahead = _ahead(app, environment, run)
            if not ahead.queued and _take_lock(app, environment, run.id):
                if not queued or app.store.leave_queue(run.id, stage_id, actor=app.settings.actor):
                    return True
                release(app, environment, run.id)  # superseded between the last look and its turn
                return False
            if not queued:
                queued = True
                _join(app, project, run, environment=environment, stage_id=stage_id, ahead=ahead, timeout=timeout)
            elif app.store.get_run(run.id).state is State.SUPERSEDED:
                return False
            waited = app.clock.monotonic() - started
            if waited >= timeout:
                raise _timed_out(environment, run, ahead, waited=waited, timeout=timeout)
            await app.clock.sleep(min(POLL, timeout - waited))
    except BaseException:
        if queued:  # a signal, the timeout, a store error: recorded by the runner from running, as for any stage
            with contextlib.suppress(StoreError, StateError):
                app.store.leave_queue(run.id, stage_id, actor=app.settings.actor)
        raise


def release(app: App, environment: str, run_id: int) -> None:
    """Let go of the environment lock taken by :func:`wait_turn` (nothing when the deployment already did)."""
    app.store.release_lock(lock_name(environment), _holder(app, run_id))


def _holder(app: App, run_id: int) -> str:
    return holder_text(app.settings.actor, run_id=run_id)  # the deployment's environment_lock names itself so too


def _take_lock(app: App, environment: str, run_id: int) -> bool:
    try:
        app.store.acquire_lock(lock_name(environment), _holder(app, run_id), ttl=LOCK_TTL, is_dead=holder_is_dead)
    except LockHeld:
        return False
    return True


def _ahead(app: App, environment: str, run: RunRecord) -> Ahead:
    """Who holds the environment, and which older runs are queued for it whose process still lives (a
    dead one is recorded interrupted by the next command that opens the store; it does not block)."""
    locks = {lock.name: lock for lock in app.store.locks()}
    held = locks.get(lock_name(environment))
    holder = held.holder if held is not None and _alive(held) else None
    older = tuple(
        q.run_id
        for q in app.store.queued_runs(run.project)
        if q.environment == environment and q.run_id < run.id and _alive(locks.get(f"{RUN_LOCK}{q.run_id}"))
    )
    return Ahead(holder, older)


def _alive(lock: LockRecord | None) -> bool:
    return lock is not None and not holder_is_dead(lock.holder)


def _join(
    app: App, project: Project, run: RunRecord, *, environment: str, stage_id: int, ahead: Ahead, timeout: float
) -> None:
    """Record the run queued, supersede the older ones queued for the same environment, and say so."""
    behind = ahead.describe()
    if not app.store.join_queue(run.id, stage_id, environment=environment, behind=behind, actor=app.settings.actor):
        raise StateError(f"run {run.id} is no longer running: it cannot wait for {environment}")
    app.observer.message(
        f"run {run.id} is queued for {environment} behind {behind}; it deploys when its turn comes "
        f"(at most {timeout:g} s, the stage's timeout)"
    )
    if project.queue.supersede:
        newer = ordering.supersede_queued(app, run, environment=environment)
        if newer is not None:  # a run of a newer commit already waits: this one is the outdated one
            why = f"run {newer} of a newer commit is queued for {environment} already"
            if app.store.supersede_run(run.id, reason=f"superseded by run {newer}: {why}", actor=app.settings.actor):
                app.observer.message(f"run {run.id} (commit {run.commit[:12]}) is superseded: {why}")


def _timed_out(environment: str, run: RunRecord, ahead: Ahead, *, waited: float, timeout: float) -> LockHeld:
    return LockHeld(
        f"{environment} stayed busy: run {run.id} waited {waited:.1f} s in its queue (the deploy stage's "
        f"timeout is {timeout:g} s) behind {ahead.describe()}; nothing was deployed",
        hint="run it again once the deployment ahead has finished ('slipway status' shows the queue), or raise "
        "the stage's 'timeout' in slipway.yml",
    )
