"""Read-only views of one run: the run itself and the stored output of its steps (``slipway logs``)."""

from __future__ import annotations

from dataclasses import dataclass

from slipway.model.records import RunRecord, StepRecord
from slipway.services.app import App


@dataclass(frozen=True)
class StageStep:
    """One step of a run, with the name of the stage it belongs to."""

    stage: str
    step: StepRecord


@dataclass(frozen=True)
class RunLogs:
    """The steps of a run (of one stage with ``stage``) in the order they ran, with their output."""

    run: RunRecord
    stage: str | None
    steps: tuple[StageStep, ...]


def get_run(app: App, run_id: int) -> RunRecord:
    """The run and its stages; StateError (exit 9) if there is no such run."""
    return app.store.get_run(run_id)


def run_logs(app: App, run_id: int, *, stage: str | None = None) -> RunLogs:
    """Every step of a run (or of its stage ``stage``) with timings, exit codes and output."""
    run = app.store.get_run(run_id)
    steps = tuple(StageStep(name, step) for name, step in app.store.steps(run_id, stage=stage))
    return RunLogs(run, stage, steps)
