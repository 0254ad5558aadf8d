"""The pipeline runner: moves a run through its stages, in order, along the state machine.

It knows nothing of git, shells or hosts; each stage kind is handled by a callable the services layer
provides. A handler returns the state its stage ended in (``SUCCEEDED``, ``WAITING`` for a gate that
parks the run, or ``SUPERSEDED`` for a deploy stage that a newer run superseded while it was queued for its
environment, which the store already records with its run); an exception fails the stage and the run;
cancellation (a signal) cancels both. A run
that was parked continues from its first stage that is not final, in a new process, from the store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from slipway.engine.events import Observer
from slipway.errors import SlipwayError, StateError, StoreError
from slipway.model.records import RunRecord, StageRecord
from slipway.model.states import StageKind, State
from slipway.ports import RunLog

StageHandler = Callable[[StageRecord], Awaitable[State]]


async def drive_run(
    store: RunLog,
    run_id: int,
    handlers: Mapping[StageKind, StageHandler],
    observer: Observer,
    *,
    actor: str,
) -> State:
    """Run every remaining stage of ``run_id``; return the run's final (or waiting) state.

    Whatever stops a stage is recorded before it propagates: a SlipwayError or any unexpected exception
    fails the stage and the run; a cancellation (a signal) cancels them. When the store stopped answering
    during a stage, the run is recorded ``interrupted`` (journalled) and ``slipway resume`` goes on later.
    What is recorded after a failure is worked out from the run as read at the start, not read again:
    the store may be the thing that failed.
    """
    run = store.get_run(run_id)
    if run.state is State.PENDING:
        store.set_run_state(run_id, State.RUNNING, actor=actor)
    elif run.state is not State.RUNNING:
        raise StateError(f"run {run_id} is {run.state.value}; only a pending or resumed run can be driven")
    for stage in run.stages:
        if stage.state.is_final:
            continue
        if stage.state is State.WAITING and stage.kind is not StageKind.DEPLOY:
            # A deploy stage that waits (a parked canary) is driven again once someone decided: its
            # handler picks the deployment up from the store. Any other waiting stage is a gate.
            raise StateError(f"stage {stage.name} of run {run_id} is waiting for a decision")
        store.set_stage_state(stage.id, State.RUNNING)
        observer.stage_started(stage.name, stage.kind.value)
        started = time.monotonic()
        try:
            outcome = await handlers[stage.kind](stage)
        except asyncio.CancelledError as exc:
            reason = str(exc.args[0]) if exc.args and exc.args[0] else "interrupted by the user"
            if store.get_run(run_id).state.is_final:  # superseded while it waited in a queue: that stands
                observer.stage_finished(stage.name, State.SUPERSEDED, time.monotonic() - started, reason)
                raise
            _cancel_rest(store, run, stage, reason=reason, actor=actor)
            observer.stage_finished(stage.name, State.CANCELLED, time.monotonic() - started, reason)
            raise
        except Exception as exc:  # a SlipwayError, or a bug: either way the run is not left running
            message = str(exc) if isinstance(exc, SlipwayError) else f"internal error: {type(exc).__name__}: {exc}"
            store.set_stage_state(stage.id, State.FAILED, error=message)
            _skip_rest(store, run, after=stage.index)
            first = message.splitlines()[0] if message else type(exc).__name__
            store.set_run_state(run_id, State.FAILED, error=f"stage {stage.name} failed: {first}", actor=actor)
            observer.stage_finished(stage.name, State.FAILED, time.monotonic() - started, message)
            raise
        if outcome is State.SUPERSEDED:  # recorded with the run by whoever superseded it (services/ordering.py)
            observer.stage_finished(stage.name, outcome, time.monotonic() - started, None)
            return State.SUPERSEDED
        store.set_stage_state(stage.id, outcome)
        observer.stage_finished(stage.name, outcome, time.monotonic() - started, None)
        if store.unavailable is not None:  # recorded in the journal; the run goes no further without a store
            raise _stop_without_store(store, run, stage, outcome, actor=actor)
        if outcome is State.WAITING:
            store.set_run_state(run_id, State.WAITING, actor=actor)
            return State.WAITING
    store.set_run_state(run_id, State.SUCCEEDED, actor=actor)
    return State.SUCCEEDED


def _stop_without_store(store: RunLog, run: RunRecord, stage: StageRecord, outcome: State, *, actor: str) -> StoreError:
    """The stage ended while the store did not answer: the run ends there (journalled), resumable later."""
    last = outcome is State.SUCCEEDED and stage is run.stages[-1]
    state, error = (State.SUCCEEDED, None) if last else (State.INTERRUPTED, "the state store stopped answering")
    store.set_run_state(run.id, state, error=error, actor=actor)
    where = store.journal.path if store.journal is not None else None
    cause = store.unavailable.message.splitlines()[0] if store.unavailable else "the state store stopped answering"
    return StoreError(
        f"the state store stopped answering during stage {stage.name} of run {run.id} ({cause}); the stage "
        f"{outcome.value}, the run is recorded {'succeeded' if last else 'interrupted'} in the journal {where}",
        hint="the next command writes the journal into the store once it answers"
        + ("" if last else f"; then 'slipway resume {run.id}' goes on"),
    )


def _skip_rest(store: RunLog, run: RunRecord, *, after: int) -> None:
    for stage in run.stages:
        if stage.index > after and stage.state is State.PENDING:
            store.set_stage_state(stage.id, State.SKIPPED)


def _cancel_rest(store: RunLog, run: RunRecord, current: StageRecord, *, reason: str, actor: str) -> None:
    """Record a stop (a signal): the running stage and the run are cancelled, the stages after it too."""
    store.set_stage_state(current.id, State.CANCELLED, error=reason)
    for stage in run.stages:
        if stage.index > current.index and stage.state in (State.PENDING, State.WAITING):
            store.set_stage_state(stage.id, State.CANCELLED, error=reason)
    store.set_run_state(run.id, State.CANCELLED, error=reason, actor=actor)
