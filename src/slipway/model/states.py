"""States of runs, stages, steps and deployments, and the only edges they may move along.

A state changes only through :func:`transition`, which refuses an edge the machine does not have.
That keeps "the store always says truthfully what happened" a property of the code, not a habit.
"""

from __future__ import annotations

from enum import StrEnum

from slipway.errors import StateError


class State(StrEnum):
    """The life cycle shared by runs, stages and steps."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    #: A deploy stage (and its run) waiting for its environment, busy with another deployment: services/queue.py.
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    #: A run (and the gate it waited at) that a newer run made obsolete: services/ordering.py.
    SUPERSEDED = "superseded"
    #: The process driving it died (SIGKILL, a crash, a lost machine); found and recorded by the next command.
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        """True for states a run never leaves."""
        return self in FINAL

    @property
    def has_ended(self) -> bool:
        """True once nothing drives it any more: final, or stopped and resumable (cancelled, interrupted)."""
        return self in FINAL or self in RESUMABLE


FINAL = frozenset({State.SUCCEEDED, State.FAILED, State.SKIPPED, State.SUPERSEDED})
#: Stopped part-way: ``slipway resume`` takes a run (and its stages) out of these, and nothing else does.
RESUMABLE = frozenset({State.CANCELLED, State.INTERRUPTED})

_EDGES: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RUNNING, State.SKIPPED, State.CANCELLED}),
    State.RUNNING: frozenset(
        {State.SUCCEEDED, State.FAILED, State.WAITING, State.QUEUED, State.CANCELLED, State.INTERRUPTED}
    ),
    # Out of the queue: its turn came (running again), a newer run superseded it, or its process died.
    # A signal or the queue's timeout first puts it back to running: cancelled and failed are recorded from there.
    State.QUEUED: frozenset({State.RUNNING, State.SUPERSEDED, State.INTERRUPTED}),
    State.WAITING: frozenset({State.RUNNING, State.SUCCEEDED, State.FAILED, State.CANCELLED, State.SUPERSEDED}),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    # Resume: a run goes back to running, its stopped stages to pending (then run again, from the first).
    State.CANCELLED: frozenset({State.RUNNING, State.PENDING}),
    State.INTERRUPTED: frozenset({State.RUNNING, State.PENDING}),
    State.SKIPPED: frozenset(),
    State.SUPERSEDED: frozenset(),
}


def can_transition(current: State, target: State) -> bool:
    """Whether the state machine has an edge from ``current`` to ``target``."""
    return target in _EDGES[current]


def transition(current: State, target: State, *, what: str = "run") -> State:
    """Return ``target`` if the edge exists, else raise StateError naming both ends."""
    if not can_transition(current, target):
        allowed = ", ".join(sorted(s.value for s in _EDGES[current])) or "none (it is final)"
        raise StateError(
            f"{what} cannot go from {current.value} to {target.value}; allowed from {current.value}: {allowed}"
        )
    return target


class StageKind(StrEnum):
    """What a pipeline stage does."""

    BUILD = "build"
    TEST = "test"
    DEPLOY = "deploy"
    ACCEPTANCE = "acceptance"
    APPROVAL = "approval"
    POST_DEPLOY = "post-deploy"
    LOAD_TEST = "load-test"


class RunKind(StrEnum):
    """How a run came to be."""

    PIPELINE = "pipeline"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    #: A merge request's build and test on its merge result, and its review environment (services/review.py).
    MERGE_REQUEST = "merge-request"


class DeploymentKind(StrEnum):
    """A deployment installs a release, or rolls back to one already installed."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class Decision(StrEnum):
    """The outcome of an approval gate."""

    APPROVED = "approved"
    REJECTED = "rejected"
