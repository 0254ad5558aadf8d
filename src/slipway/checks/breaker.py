"""Circuit breakers for external dependencies: a pure state machine over immutable, storable state.

::

    CLOSED --(a failure that brings the failure rate over the window to the threshold,
              with at least min_calls outcomes)-----------------------------------------> OPEN
    OPEN   --(allow() after cool_down seconds)---------------------------------------> HALF_OPEN
    HALF_OPEN --(half_open_trials successes in a row)--> CLOSED (window cleared)
    HALF_OPEN --(any failure)--------------------------> OPEN (cool-down starts again)

Only a failure opens a breaker. A success is evidence that the dependency answers; it is recorded
in the window (lowering the failure rate) and never opens the breaker, even when the failures already
in the window reach the threshold once it has min_calls outcomes (one failure, then one success, with
min_calls 2 and failure_rate 0.5, leaves it closed: the last check passed).

The functions take the time as an argument and return a new state; they never read a clock or touch a
store. That is what lets several Slipway processes share one breaker: each loads the state, computes
the next one, and saves it with optimistic concurrency (``version``), retrying on conflict. Times are
wall-clock seconds (``Clock.now()``), because monotonic readings mean nothing to another process.
See docs/checks.md for why this is hand-written rather than taken from a library.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from slipway.errors import StoreError
from slipway.model.checks import BreakerPolicy

#: Bumped when the stored shape changes; from_dict refuses shapes it does not know.
SCHEMA_VERSION = 1


class BreakerStatus(StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Outcome:
    """One recorded check: when it finished and whether it passed."""

    at: float
    ok: bool


@dataclass(frozen=True)
class BreakerState:
    """A breaker's whole state; replace it, never mutate it."""

    status: BreakerStatus = BreakerStatus.CLOSED
    #: The most recent outcomes while closed, oldest first (at most ``policy.window``).
    window: tuple[Outcome, ...] = ()
    #: When the breaker last opened (wall clock), None unless open or half-open.
    opened_at: float | None = None
    #: Why it opened: the failure count and the last failure's evidence.
    reason: str = ""
    #: Half-open: trials let through, trials passed, and when the last one was let through.
    trials_started: int = 0
    trials_passed: int = 0
    trial_started_at: float | None = None
    #: Optimistic-concurrency version; the repository sets it, transitions carry it along unchanged.
    version: int = 0

    @property
    def failures(self) -> int:
        """Failed outcomes in the window."""
        return sum(1 for o in self.window if not o.ok)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (only str, int, float, bool, None, lists and dicts)."""
        return {
            "schema": SCHEMA_VERSION,
            "status": self.status.value,
            "window": [[o.at, o.ok] for o in self.window],
            "opened_at": self.opened_at,
            "reason": self.reason,
            "trials_started": self.trials_started,
            "trials_passed": self.trials_passed,
            "trial_started_at": self.trial_started_at,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BreakerState:
        """The state ``to_dict`` produced; StoreError when the stored data is not one."""
        try:
            if data["schema"] != SCHEMA_VERSION:
                raise ValueError(f"unknown schema {data['schema']!r}")
            return cls(
                status=BreakerStatus(data["status"]),
                window=tuple(Outcome(at=float(at), ok=_bool(ok)) for at, ok in data["window"]),
                opened_at=_opt_float(data["opened_at"]),
                reason=str(data["reason"]),
                trials_started=int(data["trials_started"]),
                trials_passed=int(data["trials_passed"]),
                trial_started_at=_opt_float(data["trial_started_at"]),
                version=int(data["version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"stored circuit breaker state is unreadable: {exc}") from exc


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true/false, got {value!r}")
    return value


# --- transitions -------------------------------------------------------------------------------------


def allow(state: BreakerState, now: float, policy: BreakerPolicy) -> tuple[bool, BreakerState]:
    """May a check run now? Returns the answer and the state to save (open may turn half-open)."""
    if state.status is BreakerStatus.CLOSED:
        return True, state
    if state.status is BreakerStatus.OPEN:
        opened_at = state.opened_at if state.opened_at is not None else now
        if now < opened_at + policy.cool_down:  # the same sum as retry_at(), so they never disagree
            return False, state
        return True, replace(
            state, status=BreakerStatus.HALF_OPEN, trials_started=1, trials_passed=0, trial_started_at=now
        )
    # Half-open: let through up to half_open_trials checks. A trial whose process died never reports;
    # after another cool-down without a verdict the trials start over, so the breaker cannot stick.
    if state.trials_started < policy.half_open_trials:
        return True, replace(state, trials_started=state.trials_started + 1, trial_started_at=now)
    last = state.trial_started_at if state.trial_started_at is not None else now
    if now >= last + policy.cool_down:
        return True, replace(state, trials_started=1, trials_passed=0, trial_started_at=now)
    return False, state


def record(
    state: BreakerState, ok: bool, now: float, policy: BreakerPolicy, *, evidence: str = ""
) -> BreakerState:
    """The state after a check finished with ``ok``; ``evidence`` of a failure becomes the reason."""
    if state.status is BreakerStatus.OPEN:
        # A check let through before the breaker opened reports late: the verdict is already in.
        return state
    if state.status is BreakerStatus.HALF_OPEN:
        if state.trials_passed >= state.trials_started:
            # No trial is outstanding, so this is a late report of a check let through while closed.
            return state
        if not ok:
            return _open(state, now, f"trial check failed{_colon(evidence)}")
        passed = state.trials_passed + 1
        if passed >= policy.half_open_trials:
            return BreakerState(version=state.version)
        return replace(state, trials_passed=passed)
    window = prune((*state.window, Outcome(now, ok)), now, policy)
    closed = replace(state, window=window)
    if ok or len(window) < policy.min_calls:
        return closed  # a success never opens a breaker: the dependency just answered
    failures = closed.failures
    if failures / len(window) >= policy.failure_rate:
        why = f"{failures} of the last {len(window)} checks failed (threshold {policy.failure_rate:.0%})"
        return _open(closed, now, why + _colon(evidence, "last failure"))
    return closed


def prune(window: tuple[Outcome, ...], now: float, policy: BreakerPolicy) -> tuple[Outcome, ...]:
    """Keep the newest ``policy.window`` outcomes, dropping those older than ``policy.max_age``."""
    kept = window[-policy.window :]
    if policy.max_age is not None:
        kept = tuple(o for o in kept if now - o.at <= policy.max_age)
    return kept


def retry_at(state: BreakerState, policy: BreakerPolicy) -> float | None:
    """When an open breaker will let a trial through (wall clock), None when it is not open."""
    if state.status is not BreakerStatus.OPEN or state.opened_at is None:
        return None
    return state.opened_at + policy.cool_down


def _open(state: BreakerState, now: float, reason: str) -> BreakerState:
    return replace(
        state,
        status=BreakerStatus.OPEN,
        opened_at=now,
        reason=reason,
        trials_started=0,
        trials_passed=0,
        trial_started_at=None,
    )


def _colon(evidence: str, label: str = "") -> str:
    if not evidence:
        return ""
    return f"; {label}: {evidence}" if label else f": {evidence}"


# --- persistence -------------------------------------------------------------------------------------


class BreakerRepository(Protocol):
    """Where breaker states live, shared by every Slipway process that uses the same store.

    Calls are synchronous and short (one row by key); the SQL implementation belongs to ``store/``.
    """

    def load(self, name: str) -> BreakerState | None:
        """The saved state of breaker ``name``, or None when it was never saved."""
        ...

    def save(self, name: str, state: BreakerState, *, expected_version: int) -> bool:
        """Store ``state`` with version ``expected_version + 1`` if the stored version is still
        ``expected_version`` (0 for "not stored yet"); False, storing nothing, when someone else won."""
        ...


class InMemoryBreakerRepository:
    """A BreakerRepository in a dict, for one process and for tests; thread-safe."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}
        self._lock = threading.Lock()

    def load(self, name: str) -> BreakerState | None:
        """The saved state, or None."""
        with self._lock:
            return self._states.get(name)

    def save(self, name: str, state: BreakerState, *, expected_version: int) -> bool:
        """Compare-and-set on the version."""
        with self._lock:
            current = self._states.get(name)
            if (current.version if current is not None else 0) != expected_version:
                return False
            self._states[name] = replace(state, version=expected_version + 1)
            return True
