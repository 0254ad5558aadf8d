"""Plain records the state store returns: what happened, read back. No ORM objects leave the store."""

from __future__ import annotations

from dataclasses import dataclass, field

from slipway.model.states import Decision, DeploymentKind, RunKind, StageKind, State


@dataclass(frozen=True)
class StepRecord:
    """One command (or built-in action) run on one host."""

    id: int
    stage_id: int
    name: str
    host: str
    command: str
    state: State
    exit_code: int | None
    started_at: float | None
    finished_at: float | None
    log: str = ""

    @property
    def duration(self) -> float | None:
        """Seconds the step took, once it finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class StageRecord:
    """One stage of a run."""

    id: int
    run_id: int
    index: int
    name: str
    kind: StageKind
    environment: str | None
    state: State
    started_at: float | None
    finished_at: float | None
    error: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run of the pipeline (or a promotion or rollback)."""

    id: int
    project: str
    kind: RunKind
    commit: str
    state: State
    artifact_digest: str | None
    triggered_by: str
    created_at: float
    finished_at: float | None
    config_text: str
    config_path: str
    error: str | None = None
    stages: tuple[StageRecord, ...] = field(default_factory=tuple)
    #: The merge request of a ``merge-request`` run (docs/triggers.md, "Review environments").
    merge_request: int | None = None


@dataclass(frozen=True)
class ArtifactRecord:
    """An artifact built by a run."""

    digest: str
    project: str
    commit: str
    built_at: float
    size: int
    file_count: int
    run_id: int | None


@dataclass(frozen=True)
class HostDeployment:
    """What one deployment did on one host."""

    host: str
    from_release: str | None
    to_release: str
    state: State
    error: str | None
    duration: float | None


@dataclass(frozen=True)
class DeploymentRecord:
    """One deployment (or rollback) of an environment."""

    id: int
    environment: str
    kind: DeploymentKind
    run_id: int | None
    artifact_digest: str
    release_id: str
    state: State
    started_at: float
    finished_at: float | None
    deployed_by: str
    reason: str | None
    hosts: tuple[HostDeployment, ...] = ()
    #: The strategy's kind (``all_at_once``, ``rolling``, ...); None for a deployment recorded before 0003.
    strategy: str | None = None


@dataclass(frozen=True)
class HostRelease:
    """Which release runs on a host right now, according to the store."""

    environment: str
    host: str
    release_id: str
    artifact_digest: str
    commit: str
    since: float
    deployment_id: int
    run_id: int | None


@dataclass(frozen=True)
class SlotRelease:
    """Blue/green: the release one slot of a host holds, and whether that slot serves the host's traffic."""

    environment: str
    host: str
    slot: str
    release_id: str
    artifact_digest: str
    commit: str
    since: float
    deployment_id: int
    run_id: int | None
    serving: bool


@dataclass(frozen=True)
class ApprovalRecord:
    """A decision on an approval gate."""

    id: int
    run_id: int
    stage_name: str
    decision: Decision
    by: str
    reason: str
    at: float


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the audit log."""

    id: int
    at: float
    actor: str
    action: str
    subject: str
    detail: str


@dataclass(frozen=True)
class LockRecord:
    """A held lock: what it guards, who holds it (with pid, machine and start time), until when."""

    name: str
    holder: str
    acquired_at: float
    expires_at: float


@dataclass(frozen=True)
class QueuedRun:
    """A run whose deploy stage waits in an environment's queue (services/queue.py), since when."""

    run_id: int
    kind: RunKind
    commit: str
    environment: str
    stage: str
    since: float | None


@dataclass(frozen=True)
class UserRecord:
    """A server account: its name, roles (role, environment pattern) and whether it may sign in."""

    name: str
    disabled: bool
    created_at: float
    grants: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TokenRecord:
    """An API token's metadata (the token itself is never stored)."""

    id: int
    user: str
    label: str
    created_at: float
    last_used_at: float | None


@dataclass(frozen=True)
class DeliveryRecord:
    """An authentic webhook delivery and what came of it (started a run, ignored, failed)."""

    id: int
    project: str
    forge: str
    delivery_id: str
    event: str
    received_at: float
    outcome: str
    detail: str
    run_id: int | None
