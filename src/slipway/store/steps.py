"""The steps of a stage: each command on each host, how it ended and what it printed (``slipway logs``)."""

from __future__ import annotations

from sqlalchemy import select

from slipway.errors import StateError
from slipway.model import records as rec
from slipway.model.states import State, transition
from slipway.store import schema as t
from slipway.store.base import StoreBase, journalled, label


class StepStore(StoreBase):
    """The steps of a stage: each command on each host, how it ended and what it printed (``slipway logs``)."""

    @journalled
    def start_step(self, stage_id: int, *, name: str, host: str, command: str) -> int:
        """Record a step that starts now."""
        with self._tx() as s:
            step = t.Step(
                stage_id=stage_id,
                name=label(name),
                host=host,
                command=command,
                state=State.RUNNING.value,
                started_at=self._now(),
                log="",
            )
            s.add(step)
            s.flush()
            return step.id

    @journalled
    def finish_step(self, step_id: int, state: State, *, exit_code: int | None, log: str) -> None:
        """Record how a step ended and what it printed (already masked by the caller)."""
        with self._tx() as s:
            step = s.get(t.Step, step_id)
            if step is None:
                raise StateError(f"there is no step {step_id}")
            step.state = transition(State(step.state), state, what=f"step {step.name}").value
            step.exit_code = exit_code
            step.finished_at = self._now()
            step.log = log

    def steps(self, run_id: int, *, stage: str | None = None) -> list[tuple[str, rec.StepRecord]]:
        """(stage name, step) pairs of a run in the order they ran."""
        with self._tx() as s:
            q = (
                select(t.Stage.name, t.Step)
                .join(t.Step, t.Step.stage_id == t.Stage.id)
                .where(t.Stage.run_id == run_id)
                .order_by(t.Stage.idx, t.Step.id)
            )
            if stage:
                q = q.where(t.Stage.name == stage)
            return [(name, _step_record(step)) for name, step in s.execute(q).all()]


def _step_record(step: t.Step) -> rec.StepRecord:
    return rec.StepRecord(
        step.id,
        step.stage_id,
        step.name,
        step.host,
        step.command,
        State(step.state),
        step.exit_code,
        step.started_at,
        step.finished_at,
        step.log,
    )
