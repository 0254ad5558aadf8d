"""Database migrations in a deployment: the parallel-change order, enforced.

- Before any host is touched, the migrations of the release are read from its verified artifact (never
  the working tree), linted, and checked against the database's history: an edited applied migration,
  an unreachable database or a release that lacks an applied contract migration stops the deployment.
- After install and before any host switches, the pending ``expand`` and ``migrate`` migrations run once
  for the environment, from this process, each recorded as a step of the stage.
- ``contract`` migrations are held until every target of the environment runs a release whose artifact
  contains them and the environment's last deployment (so its verify) succeeded; then they run at the
  end of that deployment (``contract: auto``) or on ``slipway migrations contract ENV`` (``manual``).

Which release shipped which migration is read from the artifacts themselves, and what was applied from
the history table in the application's database: the state store gains no table.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from slipway.config import LoadedConfig
from slipway.errors import ChecksumMismatch, MigrationError
from slipway.migrations import (
    BatchProgress,
    Migration,
    MigrationResult,
    MigrationState,
    MigrationStatus,
    Phase,
    order_migrations,
    parse_migration,
)
from slipway.model.config import MigrationsSpec
from slipway.model.states import DeploymentKind, State
from slipway.services import reconcile
from slipway.services.app import App
from slipway.services.environments import require_environment
from slipway.services.migration_setup import (
    artifact_has_path,
    database_url,
    held_reason,
    require_spec,
    spec_of,
)

if TYPE_CHECKING:
    from slipway.migrations.runner import MigrationRunner
    from slipway.services.framework_migrations import FrameworkDeployment

#: The "host" migration steps are recorded under: they run in the Slipway process, not on a target.
HOST = "slipway"
_BATCH_SIZE = re.compile(r"^\s*--\s*slipway:batch\b.*\bsize=", re.MULTILINE)


# -- reading -------------------------------------------------------------------------------------------


def with_default_batch_size(migration: Migration, size: int) -> Migration:
    """The migration with ``size`` as its batch size when its batch header does not give one."""
    if migration.batch is None or _BATCH_SIZE.search(migration.sql):
        return migration
    return replace(migration, batch=replace(migration.batch, size=size))


def parse_directory(files: Mapping[str, str], *, batch_size: int) -> tuple[Migration, ...]:
    """Migrations from ``{path: text}`` of one directory: ``.sql`` files, hidden ones skipped, ordered."""
    parsed = [
        with_default_batch_size(parse_migration(path, text), batch_size)
        for path, text in sorted(files.items())
        if path.endswith(".sql") and not PurePosixPath(path).name.startswith(".")
    ]
    return order_migrations(parsed)


def artifact_migrations(app: App, loaded: LoadedConfig, digest: str) -> tuple[Migration, ...]:
    """The migrations inside the artifact ``digest``, read from its verified bytes."""
    spec = spec_of(loaded)
    if spec is None or spec.directory is None:  # no migrations, or a tool's (services/framework_migrations.py)
        return ()
    manifest = app.artifacts.manifest(digest)
    prefix = spec.directory + "/"
    entries = [f for f in manifest.files if f.path.startswith(prefix) and "/" not in f.path[len(prefix) :]]
    entries = [f for f in entries if f.path.endswith(".sql")]
    data = app.artifacts.read_objects(digest, {f.sha256 for f in entries})
    files: dict[str, str] = {}
    for f in entries:
        try:
            files[f.path] = data[f.sha256].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"not UTF-8 text ({exc.reason})", file=f.path) from exc
    return parse_directory(files, batch_size=spec.batch_size)


def artifact_has(app: App, digest: str, migration: Migration) -> bool:
    """Whether the artifact ``digest`` ships ``migration`` (the same path)."""
    return artifact_has_path(app, digest, migration.path)


def make_runner(
    spec: MigrationsSpec, url: str, *, on_batch: Callable[[BatchProgress], None] | None = None
) -> MigrationRunner:
    """A runner with the project's timeouts."""
    from slipway.migrations.runner import MigrationRunner  # sqlglot: only when migrations run

    return MigrationRunner(
        url,
        lock_wait=spec.lock_wait,
        lock_timeout=spec.lock_timeout,
        statement_timeout=spec.statement_timeout,
        connect_timeout=spec.connect_timeout,
        on_batch=on_batch,
    )


# -- the rules ---------------------------------------------------------------------------------------


def refuse_missing_contracts(statuses: Sequence[MigrationStatus], *, environment: str, release: str) -> None:
    """Refuse a release whose artifact lacks a contract migration already applied to the database."""
    missing = [s for s in statuses if s.state is MigrationState.MISSING and s.phase is Phase.CONTRACT]
    if not missing:
        return
    first = missing[0]
    when = f"{first.applied_at:%Y-%m-%d %H:%M} UTC" if first.applied_at else "earlier"
    names = ", ".join(f"{s.version} ({s.name})" for s in missing)
    raise MigrationError(
        f"release {release} cannot run on the database of {environment}: contract migration "
        f"{first.version} ({first.name}) was applied there on {when} by {first.applied_by}"
        + (f" with release {first.release}" if first.release else "")
        + f", and the artifact of {release} does not contain it: that release still needs what it removed"
        + (f" (all such migrations: {names})" if len(missing) > 1 else ""),
        hint="roll back or deploy only to a release that contains that migration (or a later one); to undo "
        "a contract, ship a new expand migration that restores what it dropped",
    )


def refuse_changed(statuses: Sequence[MigrationStatus]) -> None:
    """Refuse when an applied migration's file was edited."""
    for s in statuses:
        if s.state is MigrationState.CHANGED:
            when = f"{s.applied_at:%Y-%m-%d %H:%M} UTC" if s.applied_at else "earlier"
            raise ChecksumMismatch(
                f"was applied on {when} by {s.applied_by}, but the file in this release was edited since",
                file=s.path or s.name,
                hint="an applied migration must not change: restore the file and put the change in a new one",
            )


def refuse_edited_backfills(statuses: Sequence[MigrationStatus], *, environment: str) -> None:
    """Refuse when a backfill in progress would resume with a file other than the one its batches ran."""
    for s in statuses:
        if s.state is MigrationState.IN_PROGRESS and s.is_edited_backfill:
            assert s.progress_checksum is not None and s.checksum is not None
            raise ChecksumMismatch(
                f"was edited while its backfill was in progress ({s.batches_done} batches, {s.rows_done} rows "
                f"committed with checksum {s.progress_checksum[:12]}; the file now has {s.checksum[:12]})",
                file=s.path or s.name,
                hint=f"restore the file as it was, or give the backfill up with 'slipway migrations abandon "
                f"{environment} {s.version} --reason TEXT' and deploy the fixed file, which runs from the start",
            )


def lint_pending(migrations: Sequence[Migration], statuses: Sequence[MigrationStatus], dialect: str) -> None:
    """Lint every pending migration now, before any host is touched (LintError on the first finding)."""
    from slipway.migrations.lint import lint_migration  # sqlglot: only when there is something to lint

    waiting = {s.version for s in statuses if s.state in (MigrationState.PENDING, MigrationState.IN_PROGRESS)}
    for m in migrations:
        if m.version in waiting:
            lint_migration(m, dialect=dialect).raise_for_findings()


def held_reasons(app: App, loaded: LoadedConfig, environment: str, pending: Sequence[Migration]) -> dict[int, str]:
    """Why each pending contract migration must wait (absent: it may run now)."""
    reasons: dict[int, str] = {}
    for m in pending:
        if m.phase is Phase.CONTRACT:
            why = held_reason(app, loaded, environment, m.path)
            if why:
                reasons[m.version] = why
    return reasons


# -- running -----------------------------------------------------------------------------------------


@dataclass
class MigrationSteps:
    """Records each migration as a step of a stage (or in the audit log alone) and streams its progress."""

    app: App
    environment: str
    stage_id: int | None

    async def apply(
        self, spec: MigrationsSpec, url: str, migrations: Sequence[Migration], m: Migration, *, release: str
    ) -> MigrationResult:
        """Apply the pending ``m`` (its phase only; earlier files are given for the order check)."""
        app, label = self.app, f"migrate: {m.phase.value} {m.filename}"
        observer, lines = app.observer, []

        def on_batch(p: BatchProgress) -> None:
            line = f"batch {p.batch}: {p.rows} rows ({p.total_rows} in all), held {p.held * 1000:.1f} ms"
            lines.append(line)
            observer.output(HOST, "stdout", line)

        step_id = None
        if self.stage_id is not None:
            step_id = app.store.start_step(self.stage_id, name=label, host=HOST, command=f"apply {m.path}")
        observer.step_started(HOST, label)
        started = time.monotonic()
        upto = [x for x in migrations if x.version <= m.version]
        runner = make_runner(spec, url, on_batch=on_batch)
        try:
            [result] = await asyncio.to_thread(
                runner.apply, upto, phases=[m.phase], applied_by=app.settings.actor, release=release
            )
        except MigrationError as exc:
            lines.append(app.masker(str(exc)))
            self._finish(step_id, State.FAILED, lines, label, started)
            raise
        lines.append(_summary(result))
        observer.output(HOST, "stdout", lines[-1])
        self._finish(step_id, State.SUCCEEDED, lines, label, started)
        self._audit(result, release)
        return result

    async def run(self, label: str, command: str, work: Callable[[], str]) -> None:
        """One migration step of another kind (an Alembic revision): ``work`` runs in a thread and returns
        its summary line; recorded as a step like :meth:`apply`, failed on MigrationError."""
        app = self.app
        step_id = None
        if self.stage_id is not None:
            step_id = app.store.start_step(self.stage_id, name=label, host=HOST, command=command)
        app.observer.step_started(HOST, label)
        started = time.monotonic()
        try:
            summary = await asyncio.to_thread(work)
        except MigrationError as exc:
            self._finish(step_id, State.FAILED, [app.masker(str(exc))], label, started)
            raise
        app.observer.output(HOST, "stdout", summary)
        self._finish(step_id, State.SUCCEEDED, [summary], label, started)

    def _finish(self, step_id: int | None, state: State, lines: list[str], label: str, started: float) -> None:
        if step_id is not None:
            self.app.store.finish_step(
                step_id, state, exit_code=0 if state is State.SUCCEEDED else 1, log="\n".join(lines)
            )
        self.app.observer.step_finished(HOST, label, state, None, time.monotonic() - started)

    def _audit(self, result: MigrationResult, release: str) -> None:
        store, actor = self.app.store, self.app.settings.actor
        subject = f"{self.environment} {PurePosixPath(result.path).name}"
        detail: dict[str, Any] = {
            "phase": result.phase.value,
            "release": release,
            "duration": round(result.duration, 3),
            "longest_transaction": round(result.longest_transaction, 3),
            "batches": result.batches,
            "rows": result.rows,
        }
        if result.batches:
            detail.update({k: round(getattr(result, k), 4) for k in ("lock_p50", "lock_p99", "lock_max", "paused")})
        store.audit(actor, "migration.apply", subject, detail)
        for o in result.overrides:
            store.audit(
                actor,
                "migration.override",
                subject,
                {"rule": o.rule, "reason": o.reason, "line": o.line, "release": release},
            )


def _summary(r: MigrationResult) -> str:
    text = f"applied in {r.duration:.2f}s ({r.statements} statements"
    if r.batches:
        text += (
            f", {r.batches} batches, {r.rows} rows, locks held per batch p50 {r.lock_p50 * 1000:.1f} ms, "
            f"p99 {r.lock_p99 * 1000:.1f} ms, max {r.lock_max * 1000:.1f} ms"
        )
        if r.paused:
            text += f", paused {r.paused:.2f}s after batches over budget"
    if r.overrides:
        text += "; overrides: " + ", ".join(f"{o.rule} ({o.reason})" for o in r.overrides)
    return text + ")"


@dataclass
class DeploymentMigrations:
    """The migrations of one deployment: checked up front, expand/migrate before the switch, contract after."""

    app: App
    loaded: LoadedConfig
    environment: str
    release: str
    spec: MigrationsSpec
    url: str
    migrations: tuple[Migration, ...]
    steps: MigrationSteps

    async def check(self, *, rollback: bool) -> None:
        """Everything that can refuse this release, before any host is touched."""
        runner = make_runner(self.spec, self.url)
        statuses = await asyncio.to_thread(runner.status, self.migrations)
        refuse_missing_contracts(statuses, environment=self.environment, release=self.release)
        if rollback:
            return
        refuse_changed(statuses)
        refuse_edited_backfills(statuses, environment=self.environment)
        lint_pending(self.migrations, statuses, runner.dialect)

    async def expand(self) -> None:
        """Run the pending expand and migrate migrations, in version order, once for the environment."""
        runner = make_runner(self.spec, self.url)
        pending = await asyncio.to_thread(runner.pending, self.migrations)
        todo = [m for m in pending if m.phase in (Phase.EXPAND, Phase.MIGRATE)]
        if not todo:
            self.app.observer.message(f"database of {self.environment}: no expand or migrate migration pending")
        for m in todo:
            await self.steps.apply(self.spec, self.url, self.migrations, m, release=self.release)

    async def contract(self) -> list[MigrationResult]:
        """Run the contract migrations that are no longer held, unless contract is manual."""
        if self.spec.contract == "manual":
            runner = make_runner(self.spec, self.url)
            pending = await asyncio.to_thread(runner.pending, self.migrations, phase=Phase.CONTRACT)
            if pending:
                names = ", ".join(m.filename for m in pending)
                self.app.observer.message(
                    f"contract migrations held (contract: manual): {names}; "
                    f"run 'slipway migrations contract {self.environment}'"
                )
            return []
        return await run_contracts(
            self.app, self.loaded, self.environment, self.migrations, self.steps, url=self.url, release=self.release
        )


async def run_contracts(
    app: App,
    loaded: LoadedConfig,
    environment: str,
    migrations: tuple[Migration, ...],
    steps: MigrationSteps,
    *,
    url: str,
    release: str,
) -> list[MigrationResult]:
    """Apply pending contract migrations in order, stopping at the first one still held."""
    spec = spec_of(loaded)
    assert spec is not None
    runner = make_runner(spec, url)
    pending = await asyncio.to_thread(runner.pending, migrations, phase=Phase.CONTRACT)
    reasons = held_reasons(app, loaded, environment, pending)
    done: list[MigrationResult] = []
    for m in pending:
        if m.version in reasons:
            app.observer.message(f"contract migration {m.filename} is held: {reasons[m.version]}")
            break
        done.append(await steps.apply(spec, url, migrations, m, release=release))
    return done


async def for_deployment(
    app: App, loaded: LoadedConfig, *, environment: str, digest: str, release: str, stage_id: int, rollback: bool
) -> DeploymentMigrations | FrameworkDeployment | None:
    """Check a deployment's migrations before any host is touched; None when the project has none."""
    spec = spec_of(loaded)
    if spec is None:
        return None
    if spec.tool != "sql":
        framework = framework_deployment(app, loaded, environment, release, digest, MigrationSteps(app, environment, stage_id))
        await framework.check(rollback=rollback)
        return framework
    url = database_url(app, loaded, environment)
    migrations = await asyncio.to_thread(artifact_migrations, app, loaded, digest)
    found = DeploymentMigrations(
        app, loaded, environment, release, spec, url, migrations, MigrationSteps(app, environment, stage_id)
    )
    await found.check(rollback=rollback)
    return found


async def check_rollback(app: App, loaded: LoadedConfig, environment: str, *, digest: str, release: str) -> None:
    """Refuse going back to a release whose artifact lacks a contract migration applied since."""
    spec = spec_of(loaded)
    if spec is None:
        return
    if spec.tool != "sql":
        steps = MigrationSteps(app, environment, None)
        await framework_deployment(app, loaded, environment, release, digest, steps).check(rollback=True)
        return
    url = database_url(app, loaded, environment)
    migrations = await asyncio.to_thread(artifact_migrations, app, loaded, digest)
    statuses = await asyncio.to_thread(make_runner(spec, url).status, migrations)
    refuse_missing_contracts(statuses, environment=environment, release=release)


# -- the migrations commands -------------------------------------------------------------------------


def current_artifact(app: App, environment: str) -> tuple[str, str] | None:
    """(digest, release) of the newest release rolled out to the environment (a rollback rolls none out:
    after one, the contracts of the release rolled back from are still known, and shown as held)."""
    succeeded = [d for d in app.store.deployments(environment, limit=200) if d.state is State.SUCCEEDED]
    for d in succeeded:
        if d.kind is DeploymentKind.DEPLOY:
            return d.artifact_digest, d.release_id
    return (succeeded[0].artifact_digest, succeeded[0].release_id) if succeeded else None


async def contract_now(app: App, loaded: LoadedConfig, environment: str) -> list[str]:
    """``slipway migrations contract ENV``: run the contract migrations that are no longer held; their files."""
    require_environment(loaded.project, environment)
    spec = require_spec(loaded)
    current = current_artifact(app, environment)
    if current is None:
        raise MigrationError(f"nothing was deployed to {environment} yet: no contract migration can be due")
    digest, release = current
    url = database_url(app, loaded, environment)
    steps = MigrationSteps(app, environment, None)
    lock = f"environment {environment}"
    holder = reconcile.holder_text(app.settings.actor, run_id=None, doing="migrations contract")
    app.store.acquire_lock(lock, holder, ttl=3600, is_dead=reconcile.holder_is_dead)
    try:
        if spec.tool != "sql":
            done = await framework_deployment(app, loaded, environment, release, digest, steps).run_contracts()
            return [r.path or r.revision for r in done]
        migrations = await asyncio.to_thread(artifact_migrations, app, loaded, digest)
        results = await run_contracts(app, loaded, environment, migrations, steps, url=url, release=release)
        return [r.path for r in results]
    finally:
        app.store.release_lock(lock, holder)


def framework_deployment(
    app: App, loaded: LoadedConfig, environment: str, release: str, digest: str, steps: MigrationSteps
) -> FrameworkDeployment:
    """The framework migrations of a deployment of ``release`` (services/framework_migrations.py)."""
    from slipway.services.framework_migrations import deployment_of

    return deployment_of(app, loaded, environment, release, digest, steps)
