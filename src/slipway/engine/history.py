"""What a failed deployment goes back to, from the store's history (no I/O but the store ports)."""

from __future__ import annotations

from collections.abc import Mapping

from slipway.engine.units import Ledger
from slipway.model.records import HostRelease
from slipway.model.states import State
from slipway.ports import DeploymentHistory


def back_to_last_good(
    history: DeploymentHistory,
    ledger: Ledger,
    known: Mapping[str, HostRelease],
    *,
    environment: str,
    deployment_id: int,
) -> None:
    """Units left on a release by a deployment that did not succeed (a crash, an interrupted run, a breaker
    below its threshold) go back, if this deployment fails, to the environment's last release that did
    succeed, never to that one. ``known``: what the store records each unit runs."""
    deployments = history.deployments(environment, limit=200)
    good = next((d for d in deployments if d.state is State.SUCCEEDED), None)
    if good is None:  # nothing ever succeeded here: there is nothing better to go back to
        return
    states = {d.id: d.state for d in deployments}
    commit: str | None = None
    for unit, prev in ledger.previous.items():
        rec = known.get(unit)
        if prev is None or prev == good.release_id or rec is None or rec.release_id != prev:
            continue
        if rec.deployment_id == deployment_id or states.get(rec.deployment_id) in (None, State.SUCCEEDED):
            continue
        if commit is None:
            run = history.get_run(good.run_id) if good.run_id is not None else None
            artifact = history.get_artifact(good.artifact_digest) if run is None else None
            commit = run.commit if run else (artifact.commit if artifact else "unknown")
        ledger.previous[unit] = good.release_id
        ledger.before[unit] = HostRelease(
            environment, unit, good.release_id, good.artifact_digest, commit,
            good.finished_at or good.started_at, good.id, good.run_id,
        )
