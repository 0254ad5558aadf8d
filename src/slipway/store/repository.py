"""The state store's single entry point: every read and write of runs, deployments and the audit log.

SQLite by default (a file in ``.slipway/``), PostgreSQL when ``SLIPWAY_DATABASE_URL`` says so. The
schema is brought to the newest Alembic revision when the store opens. Every public method is one
transaction; SQLAlchemy errors become :class:`~slipway.errors.StoreError` here and nowhere else.
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from sqlalchemy import create_engine, delete, event, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from slipway.errors import LockHeld, StateError, StoreError
from slipway.model import records as rec
from slipway.model.states import Decision, DeploymentKind, RunKind, StageKind, State, transition
from slipway.private import create_private_file, make_private_dir, tighten_sqlite
from slipway.store import schema as t
from slipway.store.journal import Journal

T = TypeVar("T")
P = ParamSpec("P")
ALEMBIC_DIR = Path(__file__).parent / "alembic"
VERSION_TABLE = "slipway_store_version"
#: The newest revision in alembic/versions. Checked against Alembic by a test, so that opening an
#: up-to-date store does not have to import Alembic (it costs most of a CLI command's start-up time).
HEAD_REVISION = "0004"
SCHEMA_LOCK_KEY = 0x51195A7
#: Alembic's context is module state: one upgrade at a time per process.
_UPGRADE_LOCK = threading.Lock()


def alembic_config(engine: Engine) -> Any:
    """An Alembic config pointing at the packaged migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def journalled(method: Callable[Concatenate[Store, P], T]) -> Callable[Concatenate[Store, P], T]:
    """A write that, once the store stops answering, goes to the local journal instead (store/journal.py).

    The first refused write makes the store *unavailable* for the rest of the command: every later write
    of this kind is journalled too, in order, without trying the store. Reads still raise StoreError.
    """
    signature = pyinspect.signature(method)

    @functools.wraps(method)
    def write(self: Store, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.unavailable is None or self.journal is None:
            try:
                return method(self, *args, **kwargs)
            except StoreError as exc:
                if self.journal is None or isinstance(exc, LockHeld):
                    raise
                self.unavailable = exc
        assert self.journal is not None
        bound = signature.bind(self, *args, **kwargs).arguments
        arguments = {k: v for k, v in bound.items() if k != "self"}
        placeholder = self.journal.placeholder_id() if method.__name__ == "start_step" else None
        self.journal.append(method.__name__, arguments, at=self._now(), placeholder=placeholder)
        return cast(T, placeholder if placeholder is not None else None)

    return cast("Callable[Concatenate[Store, P], T]", write)


def _label(text: str, limit: int = 200) -> str:
    """A name that fits its column (``String(200)``): PostgreSQL refuses longer text, SQLite stores it."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_outage(exc: SQLAlchemyError) -> bool:
    """Whether the store could not be reached at all (not a refused statement, not a busy SQLite file)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError) and "locked" not in str(exc)


class Store:
    """Runs, stages, steps, artifacts, deployments, approvals, the audit log and locks."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, journal: Journal | None = None) -> None:
        self.url = url
        self._now = clock
        #: Where refused writes go (None: a refused write raises StoreError, as every read does).
        self.journal = journal
        #: The first write the store refused during this command; from then on writes are journalled.
        self.unavailable: StoreError | None = None
        self.where = _describe_url(url)  # for messages: the URL without its password
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1].split("?", 1)[0]
                if path and path != ":memory:":
                    # Private from the start: every step's output and the pipeline text live in here.
                    make_private_dir(Path(path).parent)
                    create_private_file(Path(path))
                    tighten_sqlite(Path(path))  # an older, looser file; SQLite gives -wal/-shm the db's mode
                self.engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self.upgrade()
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open the state store at {_describe_url(url)}: {exc.__class__.__name__}: {exc.args[0] if exc.args else exc}",
                hint="check SLIPWAY_DATABASE_URL (or unset it to use the SQLite file in .slipway/)",
            ) from exc

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe when several processes start at once)."""
        if self.revision() == HEAD_REVISION:
            return
        from alembic import command

        with _UPGRADE_LOCK, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two processes opening a fresh database must not both create the tables.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            cfg = alembic_config(self.engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
            return str(row[0]) if row else None

    def close(self) -> None:
        """Release all connections (and the journal, which may then be replayed)."""
        self.engine.dispose()
        if self.journal is not None:
            self.journal.close()

    @contextmanager
    def clock_at(self, at: float) -> Iterator[None]:
        """Stamp the writes made inside with ``at`` (replaying a journal: when it happened, not now)."""
        now = self._now
        self._now = lambda: at
        try:
            yield
        finally:
            self._now = now

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except (StateError, LockHeld):
            raise
        except SQLAlchemyError as exc:
            if not _is_outage(exc):
                raise StoreError(f"state store error: {exc.__class__.__name__}: {exc}") from exc
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            error = StoreError(
                f"the state store at {self.where} does not answer: {cause[0] if cause else type(exc).__name__}",
                hint="check that the database runs and SLIPWAY_DATABASE_URL points at it",
            )
            if self.journal is not None and self.unavailable is None:
                self.unavailable = error  # a read that cannot reach the store: from now on writes are journalled
            raise error from exc
        finally:
            session.close()

    # ---- runs -------------------------------------------------------------------------------------
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
    ) -> int:
        """Record a new pending run with its stages; return its id."""
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
                raise StateError(f"there is no run {run_id}", hint="'slipway history' lists the runs")
            stages = s.scalars(select(t.Stage).where(t.Stage.run_id == run_id).order_by(t.Stage.idx)).all()
            return _run_record(run, stages)

    def list_runs(self, *, limit: int = 20, project: str | None = None) -> list[rec.RunRecord]:
        """The newest runs first."""
        with self._tx() as s:
            q = select(t.Run).order_by(t.Run.id.desc()).limit(limit)
            if project:
                q = q.where(t.Run.project == project)
            runs = s.scalars(q).all()
            out = []
            for run in runs:
                stages = s.scalars(select(t.Stage).where(t.Stage.run_id == run.id).order_by(t.Stage.idx)).all()
                out.append(_run_record(run, stages))
            return out

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
                raise StateError(f"there is no run {run_id}")
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
                raise StateError(f"there is no run {run_id}")
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
                raise StateError(f"there is no run {run_id}")
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

    # ---- steps ------------------------------------------------------------------------------------
    @journalled
    def start_step(self, stage_id: int, *, name: str, host: str, command: str) -> int:
        """Record a step that starts now."""
        with self._tx() as s:
            step = t.Step(
                stage_id=stage_id,
                name=_label(name),
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

    # ---- artifacts --------------------------------------------------------------------------------
    def record_artifact(
        self, *, digest: str, project: str, commit: str, built_at: float, size: int, file_count: int, run_id: int | None
    ) -> None:
        """Remember an artifact (idempotent: the first record of a digest wins)."""
        with self._tx() as s:
            if s.get(t.Artifact, digest) is None:
                s.add(
                    t.Artifact(
                        digest=digest,
                        project=project,
                        commit=commit,
                        built_at=built_at,
                        size=size,
                        file_count=file_count,
                        run_id=run_id,
                    )
                )

    def get_artifact(self, digest: str) -> rec.ArtifactRecord | None:
        """The artifact record, or None."""
        with self._tx() as s:
            a = s.get(t.Artifact, digest)
            return _artifact_record(a) if a else None

    def artifact_for_commit(self, project: str, commit: str) -> rec.ArtifactRecord | None:
        """The artifact already built for this commit, if any: build once per commit."""
        with self._tx() as s:
            a = s.scalars(
                select(t.Artifact)
                .where(t.Artifact.project == project, t.Artifact.commit == commit)
                .order_by(t.Artifact.built_at)
            ).first()
            return _artifact_record(a) if a else None

    def runs_with_artifact(self, digest: str) -> list[rec.RunRecord]:
        """Every run that built or deployed this artifact, newest first."""
        with self._tx() as s:
            ids = s.scalars(select(t.Run.id).where(t.Run.artifact_digest == digest).order_by(t.Run.id.desc())).all()
        return [self.get_run(i) for i in ids]

    # ---- deployments ------------------------------------------------------------------------------
    def start_deployment(
        self,
        *,
        environment: str,
        kind: DeploymentKind,
        run_id: int | None,
        artifact_digest: str,
        release_id: str,
        deployed_by: str,
        reason: str | None = None,
        strategy: str | None = None,
    ) -> int:
        """Record a deployment that starts now."""
        with self._tx() as s:
            d = t.Deployment(
                environment=environment,
                kind=kind.value,
                run_id=run_id,
                artifact_digest=artifact_digest,
                release_id=release_id,
                state=State.RUNNING.value,
                started_at=self._now(),
                deployed_by=deployed_by,
                reason=reason,
                strategy=strategy,
            )
            s.add(d)
            s.flush()
            self._audit(
                s,
                deployed_by,
                f"deployment.{kind.value}",
                f"environment {environment}",
                {"deployment": d.id, "release": release_id, "artifact": artifact_digest, "run": run_id},
            )
            return d.id

    @journalled
    def finish_deployment(self, deployment_id: int, state: State, *, reason: str | None = None) -> None:
        """Record how a deployment ended."""
        with self._tx() as s:
            d = s.get(t.Deployment, deployment_id)
            if d is None:
                raise StateError(f"there is no deployment {deployment_id}")
            d.state = transition(State(d.state), state, what=f"deployment {deployment_id}").value
            d.finished_at = self._now()
            if reason:
                d.reason = reason
            self._audit(
                s,
                d.deployed_by,
                f"deployment.{state.value}",
                f"environment {d.environment}",
                {"deployment": d.id, "reason": reason},
            )

    def park_deployment(self, deployment_id: int, *, reason: str) -> None:
        """A running deployment waits for a person (canary ``on_success: pause``)."""
        self._move_deployment(deployment_id, State.WAITING, reason=reason)

    def resume_deployment(self, deployment_id: int, *, by: str, reason: str) -> None:
        """A waiting deployment runs again: someone decided (who and why go to the audit log)."""
        self._move_deployment(deployment_id, State.RUNNING, reason=reason, actor=by)

    def _move_deployment(self, deployment_id: int, state: State, *, reason: str, actor: str | None = None) -> None:
        with self._tx() as s:
            d = s.get(t.Deployment, deployment_id)
            if d is None:
                raise StateError(f"there is no deployment {deployment_id}")
            d.state = transition(State(d.state), state, what=f"deployment {deployment_id}").value
            d.reason = reason
            self._audit(
                s, actor or d.deployed_by, f"deployment.{state.value}", f"environment {d.environment}",
                {"deployment": d.id, "reason": reason},
            )

    @journalled
    def record_host(
        self,
        deployment_id: int,
        *,
        host: str,
        from_release: str | None,
        to_release: str,
        state: State,
        error: str | None,
        duration: float | None,
    ) -> None:
        """Record what a deployment did on one host (again: replaces what was recorded, one row per host)."""
        with self._tx() as s:
            row = s.scalars(
                select(t.DeploymentHost).where(
                    t.DeploymentHost.deployment_id == deployment_id, t.DeploymentHost.host == host
                )
            ).first()
            if row is None:
                row = t.DeploymentHost(deployment_id=deployment_id, host=host)
                s.add(row)
            row.from_release, row.to_release, row.state = from_release, to_release, state.value
            row.error, row.duration = error, duration

    @journalled
    def set_host_release(
        self,
        *,
        environment: str,
        host: str,
        release_id: str,
        artifact_digest: str,
        commit: str,
        deployment_id: int,
        run_id: int | None,
    ) -> None:
        """Say which release a host runs from now on (called right after its ``current`` moved)."""
        with self._tx() as s:
            row = s.get(t.HostRelease, (environment, host))
            if row is None:
                row = t.HostRelease(environment=environment, host=host)
                s.add(row)
            row.release_id = release_id
            row.artifact_digest = artifact_digest
            row.commit = commit
            row.since = self._now()
            row.deployment_id = deployment_id
            row.run_id = run_id

    def host_releases(self, environment: str | None = None) -> list[rec.HostRelease]:
        """What runs where, by environment and host."""
        with self._tx() as s:
            q = select(t.HostRelease).order_by(t.HostRelease.environment, t.HostRelease.host)
            if environment:
                q = q.where(t.HostRelease.environment == environment)
            return [
                rec.HostRelease(
                    r.environment, r.host, r.release_id, r.artifact_digest, r.commit, r.since, r.deployment_id, r.run_id
                )
                for r in s.scalars(q).all()
            ]

    # ---- blue/green slots -------------------------------------------------------------------------
    @journalled
    def set_slot_release(
        self,
        *,
        environment: str,
        host: str,
        slot: str,
        release_id: str,
        artifact_digest: str,
        commit: str,
        deployment_id: int,
        run_id: int | None,
    ) -> None:
        """Say which release a slot of a host holds (called right after that slot's ``current`` moved)."""
        with self._tx() as s:
            row = s.get(t.SlotRelease, (environment, host, slot))
            if row is None:
                row = t.SlotRelease(environment=environment, host=host, slot=slot, serving=False)
                s.add(row)
            row.release_id, row.artifact_digest, row.commit = release_id, artifact_digest, commit
            row.since, row.deployment_id, row.run_id = self._now(), deployment_id, run_id

    @journalled
    def set_serving_slot(self, environment: str, slot: str, *, actor: str = "slipway") -> None:
        """After a switch: ``slot`` serves every host of the environment; each host runs that slot's release.

        The host's record keeps the deployment (and run) that put the release into the slot; ``since`` is
        the moment it started serving.
        """
        with self._tx() as s:
            rows = s.scalars(select(t.SlotRelease).where(t.SlotRelease.environment == environment)).all()
            for row in rows:
                row.serving = row.slot == slot
                if row.slot != slot:
                    continue
                host = s.get(t.HostRelease, (environment, row.host))
                if host is None:
                    host = t.HostRelease(environment=environment, host=row.host)
                    s.add(host)
                host.release_id, host.artifact_digest, host.commit = row.release_id, row.artifact_digest, row.commit
                host.since, host.deployment_id, host.run_id = self._now(), row.deployment_id, row.run_id
            self._audit(s, actor, "slot.serve", f"environment {environment}", {"slot": slot})

    def slot_releases(self, environment: str) -> list[rec.SlotRelease]:
        """What each slot of each host of ``environment`` holds, by host and slot."""
        with self._tx() as s:
            q = (
                select(t.SlotRelease)
                .where(t.SlotRelease.environment == environment)
                .order_by(t.SlotRelease.host, t.SlotRelease.slot)
            )
            return [
                rec.SlotRelease(
                    r.environment, r.host, r.slot, r.release_id, r.artifact_digest, r.commit, r.since,
                    r.deployment_id, r.run_id, bool(r.serving),
                )
                for r in s.scalars(q).all()
            ]

    def deployments(self, environment: str | None = None, *, limit: int = 20) -> list[rec.DeploymentRecord]:
        """Recent deployments, newest first, each with its per-host results."""
        with self._tx() as s:
            q = select(t.Deployment).order_by(t.Deployment.id.desc()).limit(limit)
            if environment:
                q = q.where(t.Deployment.environment == environment)
            out = []
            for d in s.scalars(q).all():
                hosts = s.scalars(
                    select(t.DeploymentHost)
                    .where(t.DeploymentHost.deployment_id == d.id)
                    .order_by(t.DeploymentHost.host)
                ).all()
                out.append(
                    rec.DeploymentRecord(
                        d.id,
                        d.environment,
                        DeploymentKind(d.kind),
                        d.run_id,
                        d.artifact_digest,
                        d.release_id,
                        State(d.state),
                        d.started_at,
                        d.finished_at,
                        d.deployed_by,
                        d.reason,
                        tuple(
                            rec.HostDeployment(
                                h.host, h.from_release, h.to_release, State(h.state), h.error, h.duration
                            )
                            for h in hosts
                        ),
                        d.strategy,
                    )
                )
            return out

    # ---- approvals and audit ----------------------------------------------------------------------
    def add_approval(self, *, run_id: int, stage_name: str, decision: Decision, by: str, reason: str) -> None:
        """Record who decided what on a gate, and why."""
        with self._tx() as s:
            s.add(
                t.Approval(
                    run_id=run_id, stage_name=stage_name, decision=decision.value, by=by, reason=reason, at=self._now()
                )
            )
            self._audit(s, by, f"approval.{decision.value}", f"run {run_id}", {"stage": stage_name, "reason": reason})

    def approvals(self, run_id: int | None = None) -> list[rec.ApprovalRecord]:
        """Decisions on gates, oldest first."""
        with self._tx() as s:
            q = select(t.Approval).order_by(t.Approval.id)
            if run_id is not None:
                q = q.where(t.Approval.run_id == run_id)
            return [
                rec.ApprovalRecord(a.id, a.run_id, a.stage_name, Decision(a.decision), a.by, a.reason, a.at)
                for a in s.scalars(q).all()
            ]

    @journalled
    def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None) -> None:
        """Append to the audit log."""
        with self._tx() as s:
            self._audit(s, actor, action, subject, detail or {})

    def _audit(self, s: Session, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        s.add(
            t.Audit(
                at=self._now(),
                actor=actor,
                action=action,
                subject=subject,
                detail=json.dumps(detail, sort_keys=True, default=str),
            )
        )

    def audit_log(self, *, limit: int = 100) -> list[rec.AuditRecord]:
        """The newest audit entries first."""
        with self._tx() as s:
            rows = s.scalars(select(t.Audit).order_by(t.Audit.id.desc()).limit(limit)).all()
            return [rec.AuditRecord(a.id, a.at, a.actor, a.action, a.subject, a.detail) for a in rows]

    # ---- locks ------------------------------------------------------------------------------------
    def acquire_lock(
        self, name: str, holder: str, *, ttl: float, is_dead: Callable[[str], bool] | None = None
    ) -> None:
        """Take the named lock or raise LockHeld naming its holder.

        An expired lock is taken over, and so is one whose holder ``is_dead`` says is provably gone (that
        takeover is recorded in the audit log as ``lock.takeover``).
        """
        now = self._now()
        try:
            with self._tx() as s:
                row = s.get(t.Lock, name, with_for_update=True)
                if row is not None and row.expires_at > now and row.holder != holder:
                    if is_dead is None or not is_dead(row.holder):
                        raise LockHeld(
                            f"{name} is locked by {row.holder} since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row.acquired_at))}",
                            hint="wait for it to finish; if that process is gone, the lock expires at "
                            + time.strftime("%H:%M:%S", time.localtime(row.expires_at))
                            + " or remove it with 'slipway unlock'",
                        )
                    self._audit(s, holder, "lock.takeover", name, {"dead_holder": row.holder})
                if row is None:
                    s.add(t.Lock(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
                else:
                    row.holder, row.acquired_at, row.expires_at = holder, now, now + ttl
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # somebody inserted it between our read and write
                raise LockHeld(f"{name} was just locked by another process") from exc
            raise

    def locks(self) -> list[rec.LockRecord]:
        """Every lock held, by name."""
        with self._tx() as s:
            rows = s.scalars(select(t.Lock).order_by(t.Lock.name)).all()
            return [rec.LockRecord(r.name, r.holder, r.acquired_at, r.expires_at) for r in rows]

    def take_over_lock(self, name: str, dead_holder: str, *, actor: str) -> bool:
        """Remove a lock whose holder is gone (only if ``dead_holder`` still holds it); audited ``lock.takeover``."""
        with self._tx() as s:
            gone = s.execute(delete(t.Lock).where(t.Lock.name == name, t.Lock.holder == dead_holder))
            if not gone.rowcount:  # type: ignore[attr-defined]
                return False
            self._audit(s, actor, "lock.takeover", name, {"dead_holder": dead_holder})
            return True

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

    @journalled
    def release_lock(self, name: str, holder: str | None = None) -> bool:
        """Release the lock (only if ``holder`` holds it, when given); True if a lock was removed."""
        with self._tx() as s:
            q = delete(t.Lock).where(t.Lock.name == name)
            if holder is not None:
                q = q.where(t.Lock.holder == holder)
            return bool(s.execute(q).rowcount)  # type: ignore[attr-defined]


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
    )


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


def _artifact_record(a: t.Artifact) -> rec.ArtifactRecord:
    return rec.ArtifactRecord(a.digest, a.project, a.commit, a.built_at, a.size, a.file_count, a.run_id)
