"""Runs and their stages: created pending, moved along the state machine, interrupted, superseded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from slipway.errors import NotFound, StateError
from slipway.model import records as rec
from slipway.model.states import RunKind, StageKind, State, can_transition, transition
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

    def supersede_run(self, run_id: int, *, reason: str, actor: str) -> bool:
        """In one transaction: a waiting or queued run, its waiting or queued stage and the stages after it
        end as superseded (pending ones skipped). False, and nothing changed, when the run is neither waiting
        nor queued any more (its turn in the queue came, somebody approved it): compared as it is written."""
        now = self._now()
        with self._tx() as s:
            current = s.scalar(select(t.Run.state).where(t.Run.id == run_id))
            if current is None:
                raise NotFound(f"there is no run {run_id}")
            if not can_transition(State(current), State.SUPERSEDED):  # it moved on since the caller looked
                return False
            if not _move(s, t.Run, run_id, State(current), State.SUPERSEDED, finished_at=now, error=reason):
                return False
            for stage in s.scalars(select(t.Stage).where(t.Stage.run_id == run_id)).all():
                if State(stage.state) in (State.WAITING, State.QUEUED, State.PENDING):
                    end = State.SKIPPED if stage.state == State.PENDING.value else State.SUPERSEDED
                    stage.state = transition(State(stage.state), end, what=f"stage {stage.name}").value
                    stage.finished_at = now
            self._audit(s, actor, "run.superseded", f"run {run_id}", {"reason": reason})
            return True

    def join_queue(self, run_id: int, stage_id: int, *, environment: str, behind: str, actor: str) -> bool:
        """A running run and its deploy stage go to ``queued`` (one transaction, audited ``run.queued``
        with the environment and what is ``behind``). False, and nothing changed, if the run was not running."""
        with self._tx() as s:
            if not _move(s, t.Run, run_id, State.RUNNING, State.QUEUED):
                return False
            if not _move(s, t.Stage, stage_id, State.RUNNING, State.QUEUED):
                raise StateError(f"stage {stage_id} of run {run_id} is not running: it cannot join a queue")
            self._audit(s, actor, "run.queued", f"run {run_id}", {"environment": environment, "behind": behind})
            return True

    def leave_queue(self, run_id: int, stage_id: int, *, actor: str) -> bool:
        """A queued run and its stage go back to ``running`` (one transaction): its turn came, or a signal
        or the queue's timeout stops it (recorded from running). False if it is no longer queued (superseded)."""
        with self._tx() as s:
            if not _move(s, t.Run, run_id, State.QUEUED, State.RUNNING):
                return False
            _move(s, t.Stage, stage_id, State.QUEUED, State.RUNNING)
            self._audit(s, actor, "run.running", f"run {run_id}", {"from": State.QUEUED.value})
            return True

    def queued_runs(self, project: str) -> list[rec.QueuedRun]:
        """The project's queued runs, oldest first: which environment each waits for, and since when."""
        queued = State.QUEUED.value
        with self._tx() as s:
            rows = s.execute(
                select(t.Run.id, t.Run.kind, t.Run.commit, t.Stage.environment, t.Stage.name)
                .join(t.Stage, t.Stage.run_id == t.Run.id)
                .where(t.Run.project == project, t.Run.state == queued, t.Stage.state == queued)
                .order_by(t.Run.id)
            ).all()
            subjects = [f"run {row[0]}" for row in rows]
            since: dict[str, float] = {}
            if subjects:  # when each joined: its newest run.queued entry
                q = select(t.Audit.subject, func.max(t.Audit.at)).where(
                    t.Audit.action == "run.queued", t.Audit.subject.in_(subjects)
                )
                since = {subject: at for subject, at in s.execute(q.group_by(t.Audit.subject)).all()}
        return [
            rec.QueuedRun(run_id, RunKind(kind), commit, env or "", name, since.get(f"run {run_id}"))
            for run_id, kind, commit, env, name in rows
        ]

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
        deployments become ``interrupted`` (one transaction); a queued run and its queued stage too (the
        process died waiting for its environment). False when the run was neither running nor queued."""
        now = self._now()
        with self._tx() as s:
            run = s.get(t.Run, run_id)
            if run is None or State(run.state) not in (State.RUNNING, State.QUEUED):
                return False
            run.state, run.error, run.finished_at = State.INTERRUPTED.value, reason, now
            stages = s.scalars(select(t.Stage).where(t.Stage.run_id == run_id)).all()
            for stage in stages:
                if State(stage.state) in (State.RUNNING, State.QUEUED):
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


def _move(
    s: Session, table: type[t.Run] | type[t.Stage], row_id: int, current: State, target: State, **values: Any
) -> bool:
    """Compare and set: move one run or stage from ``current`` to ``target`` only if it is still in
    ``current`` as the row is written (two processes racing on one run: one wins, the other sees False)."""
    transition(current, target, what=table.__name__.lower())
    done = s.execute(
        update(table).where(table.id == row_id, table.state == current.value).values(state=target.value, **values)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


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
