"""A deployment that parks for a person: canary ``on_success: pause``.

After the canary batch baked healthily the runner raises :class:`DeploymentParked`. The deployment is
recorded as ``waiting`` (its canary hosts as done, the rest as pending) and the process may exit: every
fact needed to go on is in the store. A person then approves (the next batches run, in a new process)
or rejects (the canary hosts go back to the release each ran before). :class:`Resumed` is what the
runner needs to pick the deployment up again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from slipway.model.records import HostRelease
from slipway.model.states import State
from slipway.ports import DeploymentLog


class DeploymentParked(Exception):
    """The deployment stopped after a healthy canary and waits for a decision (not a failure)."""

    def __init__(self, environment: str, *, next_batch: int, hosts: tuple[str, ...]) -> None:
        super().__init__(f"deployment of {environment} waits for a decision after its canary ({', '.join(hosts)})")
        self.environment = environment
        self.next_batch = next_batch
        self.hosts = hosts


@dataclass(frozen=True)
class Resumed:
    """A parked deployment picked up again: where to go on and what the canary hosts ran before."""

    #: The first batch still to run.
    next_batch: int
    #: Host -> the release it ran before this deployment, for every host already switched.
    previous: Mapping[str, str | None]
    #: The store's records of those releases (digest, commit), to restart them when reverting.
    before: Mapping[str, HostRelease] = field(default_factory=dict)
    #: Set when the decision was to reject: revert the switched hosts instead of going on.
    rejected: str | None = None


def park(
    log: DeploymentLog,
    deployment_id: int,
    parked: DeploymentParked,
    *,
    units: Sequence[str],
    switched: Collection[str],
    previous: Mapping[str, str | None],
    release_id: str,
) -> None:
    """Record a parked deployment: switched units done, the others pending, the deployment waiting."""
    for unit in units:
        done = unit in switched
        log.record_host(
            deployment_id,
            host=unit,
            from_release=previous.get(unit),
            to_release=release_id,
            state=State.SUCCEEDED if done else State.PENDING,
            error=None,
            duration=None,
        )
    log.park_deployment(deployment_id, reason=str(parked))
