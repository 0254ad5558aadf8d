"""A canary that waits for a person (``on_success: pause``): find it, and pick it up again from the store.

The deployment parked as ``waiting`` with its canary hosts recorded as done (from which release). Its run
waits at the deploy stage. ``slipway approve RUN`` drives that stage again: the deployment goes on with
the batch after the canary. ``slipway reject RUN`` does too, and the deployment reverts the canary hosts.
Until then no other deployment of the environment may start, so nothing moves under the canary.
"""

from __future__ import annotations

from dataclasses import dataclass

from slipway.config import LoadedConfig
from slipway.engine.pause import Resumed
from slipway.engine.planner import plan_rollout
from slipway.errors import GateError
from slipway.model.records import DeploymentRecord, HostRelease
from slipway.model.states import Decision, State
from slipway.services.app import App


@dataclass(frozen=True)
class Resume:
    """A parked deployment this request picks up: its id, its release and where to go on."""

    deployment_id: int
    release_id: str
    resumed: Resumed


def waiting_deployment(app: App, environment: str) -> DeploymentRecord | None:
    """The environment's deployment that waits for a decision, if any."""
    return next((d for d in app.store.deployments(environment, limit=20) if d.state is State.WAITING), None)


def refuse_while_waiting(app: App, environment: str, *, run_id: int | None = None) -> DeploymentRecord | None:
    """The deployment of ``run_id`` that waits here, if any; GateError when another run's deployment waits."""
    parked = waiting_deployment(app, environment)
    if parked is not None and (parked.run_id is None or parked.run_id != run_id):
        raise GateError(
            f"deployment {parked.id} of {environment} (run {parked.run_id}) waits for a decision after its canary",
            hint=f"'slipway approve {parked.run_id} --reason TEXT' goes on, "
            f"'slipway reject {parked.run_id} --reason TEXT' reverts the canary",
        )
    return parked


def resume_of(app: App, loaded: LoadedConfig, environment: str, run_id: int | None) -> Resume | None:
    """The parked deployment that run ``run_id`` continues; GateError when another one waits here."""
    parked = refuse_while_waiting(app, environment, run_id=run_id)
    if parked is None:
        return None
    decisions = [a for a in sorted(app.store.approvals(run_id), key=lambda a: a.id) if a.at >= parked.started_at]
    if not decisions:
        raise GateError(f"deployment {parked.id} of {environment} waits for a decision; none is recorded")
    decision = decisions[-1]
    env = loaded.project.environments[environment]
    rollout = plan_rollout([t.name for t in env.targets], env)
    canary = next(b for b in rollout if b.wait_for_approval)
    done = {h.host: h.from_release for h in parked.hosts if h.state is State.SUCCEEDED}
    rejected = None
    if decision.decision is Decision.REJECTED:
        rejected = f"rejected by {decision.by}: {decision.reason}"
    return Resume(
        parked.id,
        parked.release_id,
        Resumed(canary.index + 1, done, _before(app, environment, done), rejected=rejected),
    )


def _before(app: App, environment: str, previous: dict[str, str | None]) -> dict[str, HostRelease]:
    """The store's records of the releases the canary hosts ran (digest and commit, to restart them)."""
    history = {d.release_id: d for d in app.store.deployments(environment, limit=200)}
    out: dict[str, HostRelease] = {}
    for host, release in previous.items():
        if release is None or release not in history:
            continue
        d = history[release]
        artifact = app.store.get_artifact(d.artifact_digest)
        commit = artifact.commit if artifact else "unknown"
        out[host] = HostRelease(environment, host, release, d.artifact_digest, commit, 0.0, d.id, d.run_id)
    return out


def take_up(app: App, resume: Resume) -> int:
    """Mark the parked deployment running again (who decided and why go with it); return its id."""
    why = resume.resumed.rejected or "approved after its canary"
    app.store.resume_deployment(resume.deployment_id, by=app.settings.actor, reason=why)
    app.observer.message(
        f"deployment {resume.deployment_id}: {why}; "
        + ("reverting the canary" if resume.resumed.rejected else f"going on with batch {resume.resumed.next_batch + 1}")
    )
    return resume.deployment_id
