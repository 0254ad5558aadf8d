"""Blue/green on plain hosts: two slots per host, the idle one deployed and verified, then one switch.

Every host keeps two independent release layouts, one per slot, under ``<root>/slots/<slot>/``
(``releases/``, ``shared/``, ``current``, the object store): each slot's app has its own ``current``, its
own ``shared/run`` and its own port (``strategy.slot_vars``). The router's upstream group lists both slots'
backends with their ``slot``; one of them is active.

A deployment goes to the **idle** slot: every phase, the switch of that slot's ``current``, the activate
and verify hooks and checks, and the readiness gate of each host's idle backend. None of this touches
traffic, so any failure there reverts the idle slot to what it held and ends the deployment, with the
active slot serving as before. Only when every host passed does the router ``switch`` to the idle slot;
the old slot keeps running (warm), so switching back is instant. Smoke checks run after the switch; a
failure there switches back.

The pure half (which slot is idle, where a slot lives, what a switch back reaches) is
:mod:`slipway.engine.slots`; :class:`BlueGreenRun` drives the deployment through the same
:class:`~slipway.engine.deploy.DeploymentRun` machinery as the other strategies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from slipway.engine.deploy import DeploymentRun
from slipway.engine.units import RolloutControl
from slipway.errors import CheckFailed, DeploymentError, HostOutcome, SlipwayError


class SlotSwitch(Protocol):
    """The router as a blue/green deployment sees it."""

    async def switch_to(self, slot: str) -> None:
        """Route the group to ``slot`` (listing both slots' backends first if needed)."""
        ...


@dataclass
class BlueGreenRun(DeploymentRun):
    """A deployment of the idle slot, then the switch; the units are the idle slot's layouts on the hosts.

    The rollout (batches, breaker, revert) runs on the idle slot as on any release directories; readiness
    of each host's idle backend is part of its verify. Only :meth:`finish` touches traffic. The store
    records each host's move from the release it *served* (``ledger.served``, the other slot's).
    """

    #: The slot being deployed (idle until the switch) and the one serving now (None: nothing yet).
    slot: str = ""
    serving: str | None = None
    router: SlotSwitch | None = None
    #: Smoke checks and dependencies once traffic is on the new slot; raises CheckFailed.
    smoke: Callable[[], Awaitable[None]] | None = None
    #: Records that ``slot`` serves now (the store's host releases); called right after a switch.
    on_switch: Callable[[str], None] | None = None

    def explain(self, error: DeploymentError) -> DeploymentError:
        """Every failure before the switch left traffic where it was: say so."""
        kept = f"traffic stayed on {self.serving}" if self.serving else "no slot took traffic"
        return DeploymentError(
            f"{error.message.splitlines()[0]} (blue/green: idle slot {self.slot}; {kept})", results=error.results
        )

    async def finish(self, rollout: RolloutControl) -> None:
        """Every host of the idle slot is ready: switch traffic to it, then the smoke checks; then prune."""
        assert self.router is not None
        self.steps.observer.message(f"blue/green: every host of slot {self.slot} is ready; switching traffic to it")
        await self.router.switch_to(self.slot)
        if self.on_switch is not None:
            self.on_switch(self.slot)
        if self.smoke is not None:
            await self._smoke(rollout)
        await super().finish(rollout)

    async def _smoke(self, rollout: RolloutControl) -> None:
        """Smoke checks on the new slot; a failure switches back (when there is a slot to go back to)."""
        assert self.smoke is not None and self.router is not None
        outcomes = self.ledger.outcomes
        try:
            await self.smoke()
        except SlipwayError as exc:
            summary = " ".join(str(exc).split())[:300]
            outcomes.update(
                {h: HostOutcome(h, False, step="checks after the switch", error=summary) for h in self.plan.hosts}
            )
            if self.halt_on_failed_check and isinstance(exc, CheckFailed):  # on_failure: halt
                self.ledger.failed_checks.update(self.plan.hosts)
                raise rollout.halted(
                    DeploymentError(f"deployment of {self.plan.environment} failed its checks after the switch")
                ) from exc
            if self.serving is None:
                raise DeploymentError(
                    f"deployment of {self.plan.environment} failed its checks after the switch to {self.slot}; "
                    "there is no other slot to switch back to",
                    results=outcomes,
                ) from exc
            self.steps.observer.message(f"blue/green: checks failed after the switch: back to {self.serving}")
            await self.router.switch_to(self.serving)
            if self.on_switch is not None:
                self.on_switch(self.serving)
            await rollout.revert_switched()
            raise DeploymentError(
                f"deployment of {self.plan.environment} failed its checks after the switch to {self.slot}; "
                f"traffic went back to {self.serving}",
                results=outcomes,
            ) from exc
