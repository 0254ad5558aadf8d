"""Runs and their stages: created pending, moved along the state machine, interrupted, superseded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from slipway.errors import NotFound, StateError
from slipway.model import records as rec
from slipway.model.states import RunKind, StageKind, State, transition
from slipway.store import schema as t
from slipway.store.base import StoreBase, journalled


class RunStore(StoreBase):
    """Runs and their stages: created pending, moved along the state machine, interrupted, superseded."""

    def create_run(
        self,
        *,
        project: str,
        kind: RunKind,
        commit: str,
        triggered_by: str,
        config_text: str,
        config_path: str,
        stages: Sequence[tuple[str, StageKind, str | None]],
        artifact_digest: str | None = None,
        merge_request: int | None = None,
    ) -> int:
        """Record a new pending run with its stages (``merge_request``: the request it is for); return its id."""
        now = self._now()
        with self._tx() as s:
            run = t.Run(
                project=project,
                kind=kind.value,
                commit=commit,
                state=State.PENDING.value,
                artifact_digest=artifact_digest,
                triggered_by=triggered_by,
                created_at=now,
                config_text=config_text,
                config_path=config_path,
                merge_request=merge_request,
            )
            s.add(run)
            s.flush()
            for i, (name, skind, env) in enumerate(stages):
                s.add(
                    t.Stage(
                        run_id=run.id, idx=i, name=name, kind=skind.value, environment=env, state=State.PENDING.value
                    )
                )
            self._audit(s, triggered_by, f"run.create.{kind.value}", f"run {run.id}", {"commit": commit})
            return run.id

    def get_run(self, run_id: int) -> rec.RunRecord:
        """The run and its stages; StateError if there is no such run."""
        with self._tx() as s:
            run = s.get(t.Run, run_id)
            if run is None:
                raise NotFound(f"there is no run {run_id}", hint="'slipway history' lists the runs")
            stages = s.scalars(select(t.Stage).where(t.Stage.run_id == run_id).order_by(t.Stage.idx)).all()
            return _run_record(run, stages)

    def list_runs(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        project: str | None = None,
        state: State | None = None,
        commit: str | None = None,
    ) -> list[rec.RunRecord]:
        """The newest runs first (a page of them: ``offset`` runs skipped), with their stages; ``commit``:
        only the runs of commits starting with it."""
        with self._tx() as s:
            q = _runs_where(select(t.Run), project=project, state=state, commit=commit)
            runs = s.scalars(q.order_by(t.Run.id.desc()).limit(limit).offset(offset)).all()
            stages: dict[int, list[t.Stage]] = {run.id: [] for run in runs}
            if runs:  # one query for the page's stages, not one per run
                for st in s.scalars(select(t.Stage).where(t.Stage.run_id.in_(stages)).order_by(t.Stage.idx)):
                    stages[st.run_id].append(st)
            return [_run_record(run, stages[run.id]) for run in runs]

    def count_runs(
        self, *, project: str | None = None, state: State | None = None, commit: str | None = None
    ) -> int:
        """How many runs there are (of a project, in a state, of commits starting with ``commit``)."""
        with self._tx() as s:
            q = _runs_where(select(func.count()).select_from(t.Run), project=project, state=state, commit=commit)
            return int(s.scalar(q) or 0)

    def runs_by_state(self, *, project: str | None = None) -> dict[str, int]:
        """How many runs are in each state (for /metrics)."""
        with self._tx() as s:
            q = select(t.Run.state, func.count()).group_by(t.Run.state)
            if project:
                q = q.where(t.Run.project == project)
            return {state: int(n) for state, n in s.execute(q).all()}

    def run_durations(self, *, project: str | None = None, limit: int = 1000) -> list[tuple[str, float]]:
        """(kind, seconds) of the newest finished runs (for /metrics)."""
        with self._tx() as s:
            q = (
                select(t.Run.kind, t.Run.finished_at - t.Run.created_at)
                .where(t.Run.finished_at.is_not(None))
                .order_by(t.Run.id.desc())
                .limit(limit)
            )
            if project:
                q = q.where(t.Run.project == project)
            return [(kind, float(seconds or 0.0)) for kind, seconds in s.execute(q).all()]

    def unfinished_runs(self) -> list[rec.RunRecord]:
        """Every run whose state is not final (running, waiting, cancelled, ...), oldest first."""
        final = [state.value for state in State if state.is_final]
        with self._tx() as s:
            ids = s.scalars(select(t.Run.id).where(t.Run.state.not_in(final)).order_by(t.Run.id)).all()
        return [self.get_run(i) for i in ids]

    @journalled
    def set_run_state(self, run_id: int, state: State, *, error: str | None = None, actor: str = "slipway") -> None:
        """Move a run along its state machine."""
        with self._tx() as s:
            run = s.get(t.Run, run_id)
            if run is None:
                raise NotFound(f"there is no run {run_id}")
            run.state = transition(State(run.state), state, what=f"run {run_id}").value
            if state.has_ended:
                run.finished_at = self._now()
            if error is not None:
                run.error = error
            self._audit(s, actor, f"run.{state.value}", f"run {run_id}", {"error": error} if error else {})

    def runs_in_state(self, state: State, *, project: str) -> list[rec.RunRecord]:
        """The project's runs in ``state``, oldest first."""
        with self._tx() as s:
            q = select(t.Run.id).where(t.Run.state == state.value, t.Run.project == project).order_by(t.Run.id)
            ids = s.scalars(q).all()
        return [self.get_run(i) for i in ids]

    def supersede_run(self, run_id: int, *, reason: str, actor: str) -> None:
        """In one transaction: a waiting run, its waiting stage and the stages after it end as superseded."""
        with self._tx() as s:
            run = s.get(t.Run, run_id)
            if run is None:
                raise NotFound(f"there is no run {run_id}")
            run.state = transition(State(run.state), State.SUPERSEDED, what=f"run {run_id}").value
            run.finished_at, run.error = self._now(), reason
            for stage in s.scalars(select(t.Stage).where(t.Stage.run_id == run_id)).all():
                if stage.state in (State.WAITING.value, State.PENDING.value):
                    end = State.SUPERSEDED if stage.state == State.WAITING.value else State.SKIPPED
                    stage.state = transition(State(stage.state), end, what=f"stage {stage.name}").value
                    stage.finished_at = run.finished_at
            self._audit(s, actor, "run.superseded", f"run {run_id}", {"reason": reason})

    def set_run_artifact(self, run_id: int, digest: str) -> None:
        """Bind the run to the one artifact it built (or promotes)."""
        with self._tx() as s:
            run = s.get(t.Run, run_id)
            if run is None:
                raise NotFound(f"there is no run {run_id}")
            if run.artifact_digest not in (None, digest):
                raise StateError(f"run {run_id} already deploys {run.artifact_digest}; an artifact is never swapped")
            run.artifact_digest = digest

    @journalled
    def set_stage_state(self, stage_id: int, state: State, *, error: str | None = None) -> None:
        """Move a stage along its state machine, stamping start and finish times."""
        with self._tx() as s:
            stage = s.get(t.Stage, stage_id)
            if stage is None:
                raise StateError(f"there is no stage {stage_id}")
            stage.state = transition(State(stage.state), state, what=f"stage {stage.name}").value
            now = self._now()
            if state is State.RUNNING and stage.started_at is None:
                stage.started_at = now
            if state.has_ended:
                stage.finished_at = now
            if error is not None:
                stage.error = error

    def interrupt_run(self, run_id: int, *, reason: str, actor: str = "slipway") -> bool:
        """Record that the process driving a running run died: the run, its running stages, steps and
        deployments become ``interrupted`` (one transaction). False when the run was not running."""
        now = self._now()
        with self._tx() as s:
            run = s.get(t.Run, run_id)
            if run is None or State(run.state) is not State.RUNNING:
                return False
            run.state, run.error, run.finished_at = State.INTERRUPTED.value, reason, now
            stages = s.scalars(select(t.Stage).where(t.Stage.run_id == run_id)).all()
            for stage in stages:
                if State(stage.state) is State.RUNNING:
                    stage.state, stage.error, stage.finished_at = State.INTERRUPTED.value, reason, now
            running = State.RUNNING.value
            for step in s.scalars(
                select(t.Step).where(t.Step.stage_id.in_([st.id for st in stages]), t.Step.state == running)
            ).all():
                step.state, step.finished_at = State.INTERRUPTED.value, now
            for d in s.scalars(
                select(t.Deployment).where(t.Deployment.run_id == run_id, t.Deployment.state == running)
            ).all():
                d.state, d.finished_at, d.reason = State.INTERRUPTED.value, now, reason
                self._audit(s, actor, "deployment.interrupted", f"environment {d.environment}", {"deployment": d.id})
            self._audit(s, actor, "run.interrupted", f"run {run_id}", {"error": reason})
            return True

    def runs_with_artifact(self, digest: str) -> list[rec.RunRecord]:
        """Every run that built or deployed this artifact, newest first."""
        with self._tx() as s:
            ids = s.scalars(select(t.Run.id).where(t.Run.artifact_digest == digest).order_by(t.Run.id.desc())).all()
        return [self.get_run(i) for i in ids]


def _runs_where(q: Any, *, project: str | None, state: State | None, commit: str | None) -> Any:
    """``q`` narrowed to a project's runs, in a state, of a commit (a prefix of its hash)."""
    if project:
        q = q.where(t.Run.project == project)
    if state is not None:
        q = q.where(t.Run.state == state.value)
    if commit:
        q = q.where(t.Run.commit.startswith(commit, autoescape=True))
    return q


def _run_record(run: t.Run, stages: Sequence[t.Stage]) -> rec.RunRecord:
    return rec.RunRecord(
        id=run.id,
        project=run.project,
        kind=RunKind(run.kind),
        commit=run.commit,
        state=State(run.state),
        artifact_digest=run.artifact_digest,
        triggered_by=run.triggered_by,
        created_at=run.created_at,
        finished_at=run.finished_at,
        config_text=run.config_text,
        config_path=run.config_path,
        error=run.error,
        stages=tuple(
            rec.StageRecord(
                st.id,
                st.run_id,
                st.idx,
                st.name,
                StageKind(st.kind),
                st.environment,
                State(st.state),
                st.started_at,
                st.finished_at,
                st.error,
            )
            for st in stages
        ),
        merge_request=run.merge_request,
    )
