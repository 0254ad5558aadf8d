"""How a rollout ends, in the store and in its error, whatever happened (the half of the Rollout that records).

- succeeded: every unit recorded as succeeded;
- parked after a healthy canary: its units done, the others pending, the deployment waiting;
- halted (``on_failure: halt``, ``auto_rollback: false``): units left as they are, the error says what next;
- failed: each unit's evidence; the error says whether the switched units went back;
- the store stopped answering: the switched units go back, what the store missed is in the journal;
- interrupted: the switched units go back, the deployment is recorded as cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from slipway.engine.pause import DeploymentParked, park
from slipway.engine.units import Ledger, Units
from slipway.errors import DeploymentError, DeploymentHalted, HostOutcome, SlipwayError, StoreError
from slipway.model.states import State
from slipway.ports import DeploymentLog, StoreHealth


def store_gone(store: StoreHealth, environment: str) -> StoreError | None:
    """The error to stop on once the store stopped answering: nothing goes forward it cannot record."""
    cause = store.unavailable
    if cause is None:
        return None
    where = store.journal.path if store.journal is not None else None
    return StoreError(
        f"the state store stopped answering during the deployment of {environment} "
        f"({cause.message.splitlines()[0]}): every host this deployment switched went back to the release it "
        f"ran; what the store could not be told is in the journal {where}",
        hint="the next command writes the journal into the store once it answers; then 'slipway status' "
        "shows what runs where, and 'slipway run' (or 'slipway resume RUN') deploys again",
    )


class Verdict:
    """The recording half of :class:`~slipway.engine.rollout.Rollout` (a mixin: the fields are the Rollout's)."""

    units: Units
    log: DeploymentLog
    deployment_id: int
    run_id: int | None
    failed: dict[str, HostOutcome]

    @property
    def ledger(self) -> Ledger:
        """What happened to each unit so far."""
        raise NotImplementedError

    @property
    def threshold(self) -> int:
        """How many failed units trip the breaker."""
        raise NotImplementedError

    async def execute(self) -> None:
        """The rollout itself."""
        raise NotImplementedError

    async def revert_switched(self, only: Sequence[str] | None = None) -> None:
        """Put the switched units back."""
        raise NotImplementedError

    async def run(self) -> None:
        """Execute, then record the outcome truthfully whatever happened; re-raise failures."""
        try:
            await self.execute()
        except DeploymentParked as parked:  # not a failure: the deployment waits for a person
            ledger = self.ledger
            park(self.log, self.deployment_id, parked, units=self.units.names, switched=ledger.switched,
                 previous=ledger.previous, release_id=self.units.release_id)
            raise
        except DeploymentHalted as exc:
            self._finish(State.FAILED, exc.message.splitlines()[0])
            raise
        except DeploymentError as exc:
            self._finish(State.FAILED, exc.message.splitlines()[0])
            raise type(exc)(  # keeps the kind (a rejected canary is not a broken release)
                exc.message.splitlines()[0] + self._what_went_back(),
                results=self.ledger.outcomes,
                hint="; ".join(  # keep what the error already advised (e.g. unreachable hosts: see docs/ssh.md)
                    h for h in (exc.hint, self._logs_hint()) if h
                ),
            ) from exc
        except StoreError as exc:  # the store stopped answering: go back without it (writes go to the journal)
            await self.revert_switched()
            self._finish(State.FAILED, "the state store stopped answering")
            raise self._without_store(exc) from exc
        except (asyncio.CancelledError, KeyboardInterrupt):
            # a stop between or inside batches: whatever switched goes back
            await self.revert_switched()
            self._finish(State.CANCELLED, "interrupted by the user")
            raise
        except SlipwayError as exc:
            self._finish(State.FAILED, str(exc).splitlines()[0])
            raise
        self._finish(State.SUCCEEDED, None)

    def _logs_hint(self) -> str:
        """Point at ``slipway logs`` only when the run recorded a step there (a failure before any step has none)."""
        if self.run_id is None:
            return ""
        try:
            recorded = bool(self.log.steps(self.run_id))
        except StoreError:  # cannot tell now; the journal may hold them
            recorded = True
        return f"'slipway logs {self.run_id}' shows every step's output" if recorded else ""

    def _finish(self, state: State, reason: str | None) -> None:
        self.record(state)
        self.log.finish_deployment(self.deployment_id, state, reason=reason)

    def _what_went_back(self) -> str:
        """What the error adds when no unit kept the release: reverted, or which could not be."""
        outcomes = self.ledger.outcomes.values()
        if any(o.ok for o in outcomes):
            return ""
        stuck = [o.host for o in outcomes if "revert failed" in o.error]
        if stuck:
            return f"; {', '.join(stuck)} could not be reverted and stay on {self.units.release_id}"
        if any("reverted" in o.error for o in outcomes):
            return "; hosts already switched were reverted"
        return ""

    def _without_store(self, exc: StoreError) -> StoreError:
        # A read may have met the outage first (a bare StoreError): say where the journal is all the same.
        gone = store_gone(self.log, self.units.environment)
        error = gone if gone is not None and "journal" not in exc.message else exc
        stuck = {h: o.error for h, o in self.ledger.outcomes.items() if "revert failed" in o.error}
        if stuck:
            return StoreError(
                f"{error.message.splitlines()[0]}; putting back failed on "
                + "; ".join(f"{h}: {e}" for h, e in stuck.items()),
                hint="'slipway rollback ENV' once the hosts answer; " + error.hint,
            )
        return error

    def record(self, state: State) -> None:
        """Write each unit's outcome of this deployment to the store."""
        ledger = self.ledger
        for unit in self.units.names:
            outcome = ledger.outcomes.get(unit)
            ok = outcome.ok if outcome else state is State.SUCCEEDED
            self.log.record_host(
                self.deployment_id,
                host=unit,
                from_release=ledger.from_release(unit),
                to_release=self.units.release_id,
                state=State.SUCCEEDED if ok else (State.CANCELLED if state is State.CANCELLED else State.FAILED),
                error=None if ok or outcome is None else outcome.error,
                duration=outcome.duration if outcome else None,
            )

    def halted(self, error: DeploymentError) -> DeploymentHalted:
        """The error of a deployment stopped by ``on_failure: halt``; units stay as they are."""
        ledger, env, release = self.ledger, self.units.environment, self.units.release_id
        for unit in self.units.names:
            if unit not in ledger.outcomes:
                on = unit in ledger.switched
                ledger.outcomes[unit] = HostOutcome(
                    unit,
                    on,
                    error="" if on else "not deployed: the deployment halted before this host",
                    release=release if on else ledger.previous.get(unit),
                )
        earlier = sorted({p for h in ledger.switched if (p := ledger.previous.get(h)) and p != release})
        if len(earlier) == 1:
            back = f"go back with 'slipway rollback {env} --to {earlier[0]} --reason TEXT'"
        elif earlier:
            back = f"go back with 'slipway rollback {env} --to RELEASE --reason TEXT' (hosts ran {', '.join(earlier)})"
        else:
            back = "there is no earlier release to go back to"
        logs = f"'slipway logs {self.run_id}' shows the evidence" if self.run_id else "the step logs show the evidence"
        left = [h for h in self.units.names if h in ledger.switched]
        return DeploymentHalted(
            f"{error.message.splitlines()[0]}; halted (on_failure: halt): "
            f"{', '.join(left) or 'no host'} left on release {release} as it is",
            results=ledger.outcomes,
            hint=f"a person decides now: {logs}; {back}, or fix the release and deploy it again",
        )

    def raise_for_partial_failure(self) -> None:
        """After the last batch: units that failed below the threshold make the deployment a failure."""
        if not self.failed:
            return
        ledger, release, names = self.ledger, self.units.release_id, self.units.names
        for unit in names:
            ledger.outcomes.setdefault(unit, HostOutcome(unit, True, release=release))
        stuck = [h for h in self.failed if "revert failed" in ledger.outcomes[h].error]
        back = [h for h in self.failed if h not in stuck]
        raise DeploymentError(
            f"deployment of {self.units.environment} failed on {len(self.failed)} of {len(names)} hosts, "
            f"below the circuit breaker threshold ({self.threshold}): "
            + (f"{', '.join(back)} went back to the release each ran before; " if back else "")
            + (f"{', '.join(stuck)} could not be reverted and stay on {release}; " if stuck else "")
            + f"the other hosts run {release}",
            results=ledger.outcomes,
        )
