"""The protocol between the rollout and the things it deploys to: units, their ledger, the router.

A *unit* is what one batch of a strategy counts: a host's release directory, one blue/green slot of a
host, or a container target (one engine). The rollout (:mod:`slipway.engine.rollout`) is written once
against :class:`Units`; each kind supplies only its primitives, as invoke's ``Runner`` leaves ``Local``
and fabric's ``Remote`` to supply theirs: deploy one unit, check it again, put it back, and the work
before the first batch and after the last. What happened to each unit goes into one :class:`Ledger`,
which the kind and the rollout both write and the store is told from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from slipway.engine.pause import Resumed
from slipway.errors import DeploymentError, DeploymentHalted, HostOutcome
from slipway.model.records import HostRelease


@dataclass
class Ledger:
    """What one deployment did so far, unit by unit."""

    #: Unit -> how it fared: failures as they happen, the successes once the rollout is through.
    outcomes: dict[str, HostOutcome] = field(default_factory=dict)
    #: Units this deployment switched to its release, in order: the ones a revert puts back.
    switched: list[str] = field(default_factory=list)
    #: Units whose checks (not their hooks) failed: ``on_failure: halt`` stops for these alone.
    failed_checks: set[str] = field(default_factory=set)
    #: Unit -> the release it ran before this deployment (None: nothing ran there).
    previous: dict[str, str | None] = field(default_factory=dict)
    #: Unit -> the store's record of that release (digest, commit), to restart it when reverting.
    before: dict[str, HostRelease | None] = field(default_factory=dict)
    #: Unit -> the release it *served* before, when that is not ``previous`` (blue/green: the other slot's).
    served: dict[str, str | None] | None = None

    def from_release(self, unit: str) -> str | None:
        """The release the store records this deployment took ``unit`` from."""
        return (self.served if self.served is not None else self.previous).get(unit)


class RolloutControl(Protocol):
    """What a unit kind may ask of the rollout once every batch is through (:meth:`Units.finish`)."""

    def halted(self, error: DeploymentError) -> DeploymentHalted:
        """The error that stops the deployment for a person (``on_failure: halt``), units left as they are."""
        ...

    async def revert_switched(self, only: Sequence[str] | None = None) -> None:
        """Put every unit this deployment switched (or those of ``only``) back on the release it had."""
        ...


class Units(Protocol):
    """One kind of unit, as the rollout drives it. Every name is a unit of :attr:`names`."""

    @property
    def environment(self) -> str:
        """The environment deployed to."""
        ...

    @property
    def release_id(self) -> str:
        """The release this deployment puts on every unit."""
        ...

    @property
    def names(self) -> Sequence[str]:
        """Every unit of the environment, in the plan's order."""
        ...

    @property
    def ledger(self) -> Ledger:
        """What happened to each unit so far (the kind fills ``previous`` and ``before`` in :meth:`prepare`)."""
        ...

    async def prepare(self, resumed: Resumed | None) -> None:
        """Everything before the first batch, where nothing users see changes (install, pull, orphans).

        ``resumed``: a parked deployment picked up again (its canary units run the release already).
        """
        ...

    async def deploy(self, name: str) -> HostOutcome | None:
        """Put the release on one unit and make it serve; None, or the failure as an outcome.

        A host switches ``current`` and runs its activate and verify hooks and checks; a container
        target runs ``deploy_services``. The kind appends the unit to ``ledger.switched`` once it
        switched (even if a later step failed), and to ``ledger.failed_checks`` when only a check failed.
        An error that is not the unit's fault (the store stopped answering) is raised, not returned.
        """
        ...

    async def verify(self, name: str) -> None:
        """The unit's checks once more (a canary bake); raise a SlipwayError (CheckFailed) when unhealthy."""
        ...

    async def revert(self, name: str) -> str:
        """Put one switched unit back on ``ledger.previous[name]`` and restart it; a note for its outcome.

        The store hears right away. Raise a SlipwayError when that fails (the unit stays on this release).
        """
        ...

    async def finish(self, rollout: RolloutControl) -> None:
        """After every batch and the environment's checks passed (prune old releases, switch the slot)."""
        ...

    def explain(self, error: DeploymentError) -> DeploymentError:
        """The error of a deployment that failed before :meth:`finish`, in this kind's words (or as it is)."""
        ...
