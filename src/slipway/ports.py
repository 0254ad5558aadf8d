"""The seams between the core and the edges.

The engine talks to the outside world only through these Protocols. Adapters implement them:
``targets/`` (local, ssh, container), ``artifacts/`` (content-addressed store), ``store/`` (SQLAlchemy),
``checks/``, ``routers/``; the store through the narrow ports at the end. ``slipway.testing`` has fakes
that let unit tests drive the engine without patching anything: :class:`slipway.testing.FakeTarget`
(a Target) and :class:`slipway.testing.FakeClock` (a Clock). tests/contract runs the same behaviours
against every Target implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from slipway.errors import CommandResult, StoreError
from slipway.model.records import ArtifactRecord, DeploymentRecord, HostRelease, RunRecord, StepRecord
from slipway.model.states import State

#: Receives one line of output: (stream name "stdout"/"stderr", line without newline).
OutputSink = Callable[[str, str], None]


@runtime_checkable
class Target(Protocol):
    """One host Slipway deploys to. Local, SSH and container targets differ only here.

    Every method raises a :class:`slipway.errors.TargetError` subclass for transport problems
    (unreachable, authentication, host key, timeout). A command that runs and exits non-zero is
    *not* an exception: ``run`` returns its :class:`CommandResult` and the caller decides.
    """

    #: The host's name as written in slipway.yml (used in logs and the store).
    name: str
    #: Absolute path of the deploy root on the host (``releases/``, ``shared/``, ``current``).
    root: str

    async def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        on_output: OutputSink | None = None,
        contained: bool = False,
    ) -> CommandResult:
        """Run a POSIX shell command on the host and return what it did.

        ``contained``: the caller vouches that the command leaves no process behind when it exits (no
        daemon, nothing in the background), as Slipway's own release-layout commands do; a target may then
        skip what guards against output written after the exit. Hooks are never contained.
        """
        ...

    async def put(self, data: bytes, path: str, *, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` on the host atomically (temp file, then rename)."""
        ...

    async def read(self, path: str) -> bytes:
        """Read a file from the host; raises TargetError if it does not exist."""
        ...

    async def close(self) -> None:
        """Release connections; the target may be used again afterwards (it reconnects)."""
        ...


class Clock(Protocol):
    """Time, injected so that retries, bake times, breakers and locks are testable.

    Tests inject :class:`slipway.testing.FakeClock`; :class:`slipway.clock.SystemClock` is the real one.
    """

    def now(self) -> float:
        """Seconds since the epoch (wall clock)."""
        ...

    def monotonic(self) -> float:
        """A monotonic reading for measuring durations."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait asynchronously."""
        ...


# The store as the engine sees it: narrow ports, each a few methods of slipway.store.repository.Store
# (which implements them all). The engine imports none of store/; services hand it the Store.


class JournalInfo(Protocol):
    """Where writes go while the store does not answer (store/journal.py)."""

    @property
    def path(self) -> Path | None:
        """The journal file, once one was written."""
        ...


class StoreHealth(Protocol):
    """Whether the store still answers; once it stopped, writes go to the journal."""

    @property
    def unavailable(self) -> StoreError | None:
        """The error that made the store stop answering, or None while it answers."""
        ...

    @property
    def journal(self) -> JournalInfo | None:
        """The journal the store writes to once it stopped answering."""
        ...


class StepLog(Protocol):
    """Records each step of a deployment (a hook, an install, a switch) and its log."""

    def start_step(self, stage_id: int, *, name: str, host: str, command: str) -> int:
        """A step began; its id."""
        ...

    def finish_step(self, step_id: int, state: State, *, exit_code: int | None, log: str) -> None:
        """A step ended."""
        ...


class ReleaseLedger(Protocol):
    """What runs where: the release each host (or container target) of an environment runs."""

    def set_host_release(
        self,
        *,
        environment: str,
        host: str,
        release_id: str,
        artifact_digest: str,
        commit: str,
        deployment_id: int,
        run_id: int | None,
    ) -> None:
        """Record that ``host`` runs ``release_id`` now."""
        ...

    def host_releases(self, environment: str | None = None) -> list[HostRelease]:
        """What every host of ``environment`` runs, as recorded."""
        ...


class DeploymentLog(StoreHealth, Protocol):
    """The outcome of one deployment: per host, and as a whole (finished or parked)."""

    def record_host(
        self,
        deployment_id: int,
        *,
        host: str,
        from_release: str | None,
        to_release: str,
        state: State,
        error: str | None,
        duration: float | None,
    ) -> None:
        """How one host fared."""
        ...

    def finish_deployment(self, deployment_id: int, state: State, *, reason: str | None = None) -> None:
        """The deployment ended."""
        ...

    def park_deployment(self, deployment_id: int, *, reason: str) -> None:
        """The deployment waits for a person (a paused canary)."""
        ...

    def steps(self, run_id: int, *, stage: str | None = None) -> list[tuple[str, StepRecord]]:
        """(stage name, step) pairs of a run in the order they ran: what ``slipway logs`` prints."""
        ...


class DeploymentHistory(Protocol):
    """Earlier deployments of an environment, and the runs and artifacts they came from."""

    def deployments(self, environment: str | None = None, *, limit: int = 20) -> list[DeploymentRecord]:
        """The latest deployments, newest first."""
        ...

    def get_run(self, run_id: int) -> RunRecord:
        """One run."""
        ...

    def get_artifact(self, digest: str) -> ArtifactRecord | None:
        """One artifact, if recorded."""
        ...


class DeploymentStore(StepLog, ReleaseLedger, DeploymentLog, DeploymentHistory, Protocol):
    """Everything a deployment of release directories records and reads."""


class RunLog(StoreHealth, Protocol):
    """The states of a run and its stages, as the pipeline runner moves them."""

    def get_run(self, run_id: int) -> RunRecord:
        """One run with its stages."""
        ...

    def set_run_state(self, run_id: int, state: State, *, error: str | None = None, actor: str = "slipway") -> None:
        """Move a run along its state machine."""
        ...

    def set_stage_state(self, stage_id: int, state: State, *, error: str | None = None) -> None:
        """Move a stage along its state machine."""
        ...
