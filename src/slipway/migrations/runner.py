"""Apply migrations to PostgreSQL or SQLite: in order, once, under a lock, with a history.

Guarantees (docs/migrations.md says the same to users):

- One runner at a time per database; a second one waits at most ``lock_wait`` seconds, then fails with
  LockTimeout naming the holder.
- An applied migration whose file changed is refused (ChecksumMismatch) before anything runs.
- Every migration runs in one transaction with its history row: a failing statement rolls the whole
  file back and raises MigrationError naming the file, the statement and the database's message.
- Statements PostgreSQL refuses inside a transaction (CREATE/DROP INDEX CONCURRENTLY, REINDEX
  CONCURRENTLY, VACUUM) make their file run statement by statement in autocommit. An invalid index
  left by a failed CONCURRENTLY build is dropped before the retry, and reported.
- On PostgreSQL every statement runs under ``lock_timeout`` and ``statement_timeout``; a lock timeout
  is retried (the whole transaction, or the one statement or batch) at most ``lock_retries`` times.
- A migrate file runs in batches of its declared size, each batch committed with its progress row, so
  an interrupted backfill resumes after the last committed key.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from slipway.errors import ChecksumMismatch, MigrationError
from slipway.migrations import history as hist
from slipway.migrations import locking
from slipway.migrations._db import Connection, DatabaseFailure, dialect_of
from slipway.migrations.budget import LockBudget, lock_summary
from slipway.migrations.concurrent import ConcurrentIndexGuard
from slipway.migrations.files import BATCH_END, BATCH_START, Migration, Override, Phase, order_migrations
from slipway.migrations.lint import lint_migration
from slipway.migrations.results import BatchProgress, MigrationResult, MigrationState, MigrationStatus
from slipway.migrations.statements import Dialect, Statement, split_statements


class _Retry(Exception):
    """Internal: a statement timed out waiting for a lock; the caller may try again."""

    def __init__(self, label: str, failure: DatabaseFailure) -> None:
        super().__init__(failure.message)
        self.label = label
        self.failure = failure


class _Failed(Exception):
    """Internal: a statement failed for another reason."""

    def __init__(self, label: str, failure: DatabaseFailure) -> None:
        super().__init__(failure.message)
        self.label = label
        self.failure = failure


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MigrationRunner:
    """Applies migration files to one database and reports what is applied and pending.

    ``database`` is a SQLAlchemy URL (``postgresql+psycopg://...``, ``sqlite:///path.db``; a bare
    ``postgresql://`` means psycopg) or an Engine. Not thread-safe: one runner per thread.
    """

    def __init__(
        self,
        database: str | sa.Engine,
        *,
        lock_wait: float = 30.0,
        lock_timeout: float = 5.0,
        statement_timeout: float | None = 600.0,
        lock_retries: int = 3,
        retry_delay: float = 1.0,
        batch_pause: float = 0.0,
        connect_timeout: float = 10.0,
        on_batch: Callable[[BatchProgress], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._engine, self._display_url = make_engine(database, connect_timeout=connect_timeout)
        self.dialect: Dialect = dialect_of(self._engine)
        self.lock_wait = lock_wait
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        self.lock_retries = lock_retries
        self.retry_delay = retry_delay
        self.batch_pause = batch_pause
        self.on_batch = on_batch
        self._sleep, self._monotonic, self._now = sleep, monotonic, now
        self._active: Connection | None = None

    # -- public API -------------------------------------------------------------------------------

    def status(self, migrations: Iterable[Migration] = ()) -> tuple[MigrationStatus, ...]:
        """Every migration known from ``migrations`` or the history, with its state, who and when."""
        ordered = order_migrations(list(migrations))
        with self._connection() as conn:
            try:
                applied = hist.read_history(conn)
                progress = hist.read_all_progress(conn)
            except DatabaseFailure as exc:
                raise MigrationError(f"cannot read the migration history: {exc.message}") from exc
        files = {m.version: m for m in ordered}
        return tuple(
            hist.status_of(version, files.get(version), applied.get(version), progress.get(version))
            for version in sorted(set(files) | set(applied) | set(progress))
        )

    def abandon(self, version: int, *, holder: str) -> hist.Progress:
        """Forget the progress row of ``version``'s backfill (under the lock); return what it said.

        The rows its committed batches changed stay changed; the version is pending again, so a fixed
        file (any checksum) runs from the first key. MigrationError when it is applied or not in progress.
        """
        with self._session(holder) as conn:
            applied = self._guard(conn, None, "read the history", lambda: hist.read_history(conn))
            if version in applied:
                row = applied[version]
                raise MigrationError(
                    f"migration {version} ({row.name}) was applied on {row.applied_at:%Y-%m-%d %H:%M} UTC by "
                    f"{row.applied_by}: only a backfill in progress can be abandoned",
                    hint="an applied migration stays; put the change in a new migration file",
                )
            progress: hist.Progress | None = self._guard(
                conn, None, "read the backfill progress", lambda: hist.read_progress(conn, version)
            )
            if progress is None:
                raise MigrationError(
                    f"migration {version} has no backfill in progress in {self._display_url}",
                    hint="'slipway migrations status ENV' lists the backfills in progress",
                )
            self._guard(conn, None, "forget the backfill progress", lambda: self._forget(conn, version))
            return progress

    def pending(
        self, migrations: Iterable[Migration], *, phase: Phase | str | None = None
    ) -> tuple[Migration, ...]:
        """The migrations not applied yet (in order), optionally only those of ``phase``."""
        wanted = None if phase is None else Phase(phase)
        files = {m.version: m for m in order_migrations(list(migrations))}
        waiting = (MigrationState.PENDING, MigrationState.IN_PROGRESS)
        return tuple(
            files[s.version]
            for s in self.status(files.values())
            if s.state in waiting and s.version in files and (wanted is None or s.phase is wanted)
        )

    @contextlib.contextmanager
    def lock(self, *, holder: str) -> Iterator[None]:
        """Hold the migration lock for the block; ``apply`` inside it reuses the lock."""
        with self._session(holder):
            yield

    def apply(
        self,
        migrations: Iterable[Migration],
        *,
        phases: Collection[Phase | str],
        applied_by: str,
        release: str | None = None,
        lint: bool = True,
    ) -> tuple[MigrationResult, ...]:
        """Apply the pending migrations of ``phases`` in version order; return what each did.

        With ``lint`` (the default) every selected migration is linted first and nothing runs while one
        has a finding without an override (LintError). The overrides used are recorded in the history.
        """
        if not applied_by.strip():
            raise MigrationError("applied_by must say who runs the migrations")
        ordered = order_migrations(list(migrations))
        wanted = frozenset(Phase(p) for p in phases)
        with self._session(applied_by) as conn:
            self._guard(conn, None, "prepare the history tables", lambda: self._ensure_tables(conn))
            applied = self._guard(conn, None, "read the history", lambda: hist.read_history(conn))
            _verify_checksums(ordered, applied)
            pending = [m for m in ordered if m.version not in applied]
            selected = [m for m in pending if m.phase in wanted]
            _check_order(pending, selected)
            overrides = {m.version: self._overrides(m, lint=lint) for m in selected}
            return tuple(
                self._apply_one(
                    conn, m, applied_by=applied_by, release=release, overrides=overrides[m.version]
                )
                for m in selected
            )

    # -- sessions ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection of the lock held by this runner, or a new one (no lock) for reading."""
        if self._active is not None:
            yield self._active
            return
        conn = Connection(self._engine, display_url=self._display_url)
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _session(self, holder: str) -> Iterator[Connection]:
        """A connection holding the migration lock (re-entrant within this runner)."""
        if self._active is not None:
            yield self._active
            return
        conn = Connection(self._engine, display_url=self._display_url)
        try:
            settings = locking.LockSettings(self.lock_wait, self._sleep, self._monotonic, self._now)
            try:
                locking.acquire(conn, holder, settings)
            except DatabaseFailure as exc:
                raise MigrationError(f"cannot take the migration lock: {exc.message}") from exc
            self._active = conn
            try:
                yield conn
            finally:
                self._active = None
                with contextlib.suppress(DatabaseFailure):
                    locking.release(conn, holder)
        finally:
            conn.close()

    def _forget(self, conn: Connection, version: int) -> None:
        with conn.transaction():
            hist.clear_progress(conn, version)

    def _ensure_tables(self, conn: Connection) -> None:
        with conn.transaction():
            hist.ensure_tables(conn)

    # -- one migration ----------------------------------------------------------------------------

    def _overrides(self, migration: Migration, *, lint: bool) -> tuple[Override, ...]:
        """Lint ``migration`` (raising LintError on findings) and return the overrides to record."""
        if not lint:
            return migration.overrides
        report = lint_migration(migration, dialect=self.dialect)
        report.raise_for_findings()
        return report.overrides_used

    def _apply_one(
        self,
        conn: Connection,
        m: Migration,
        *,
        applied_by: str,
        release: str | None,
        overrides: tuple[Override, ...],
    ) -> MigrationResult:
        """Run one migration in the mode its statements need, and record it."""
        statements = split_statements(m.sql, dialect=self.dialect, file=m.path)
        if not statements:
            raise MigrationError("the file contains no SQL statement", file=m.path)
        started = self._monotonic()

        def record() -> None:
            hist.record_applied(
                conn,
                m,
                applied_at=self._now(),
                applied_by=applied_by,
                duration=self._monotonic() - started,
                overrides=overrides,
                release=release,
            )

        base: dict[str, Any] = {
            "version": m.version,
            "name": m.name,
            "phase": m.phase,
            "path": m.path,
            "statements": len(statements),
            "overrides": overrides,
        }
        if m.phase is Phase.MIGRATE:
            extra = self._run_batched(conn, m, statements, record)
        elif any(s.needs_autocommit(self.dialect) for s in statements):
            extra = self._run_autocommit(conn, m, statements, record)
        else:
            extra = self._run_transaction(conn, m, statements, record)
        return MigrationResult(**base, duration=self._monotonic() - started, **extra)

    def _run_transaction(
        self, conn: Connection, m: Migration, statements: tuple[Statement, ...], record: Callable[[], None]
    ) -> dict[str, Any]:
        """All statements and the history row in one transaction, retried on lock timeouts."""
        for attempt in itertools.count():
            started = self._monotonic()
            try:
                with conn.transaction():
                    for statement in statements:
                        self._execute(conn, statement, statement.text)
                    self._guard(conn, m, "record the migration", record)
            except _Retry as retry:
                self._backoff(m, retry, attempt)
                continue
            except _Failed as failed:
                raise self._failure(
                    m, failed, "the migration was rolled back: the database is as before this file"
                ) from failed
            return {"longest_transaction": self._monotonic() - started, "retries": attempt}
        raise AssertionError("unreachable")

    def _run_autocommit(
        self, conn: Connection, m: Migration, statements: tuple[Statement, ...], record: Callable[[], None]
    ) -> dict[str, Any]:
        """Statement by statement outside a transaction (CONCURRENTLY, VACUUM), then the history row."""
        longest, retries = 0.0, 0
        for statement in statements:
            guard = ConcurrentIndexGuard(conn, statement, self.dialect)
            for attempt in itertools.count():
                started = self._monotonic()
                try:
                    self._execute(conn, statement, statement.text, before=guard.before)
                    break
                except _Retry as retry:
                    self._guard(conn, m, "clean up after the failed statement", guard.after_failure)
                    self._backoff(m, retry, attempt)
                    retries += 1
                except _Failed as failed:
                    note = self._guard(conn, m, "clean up after the failed statement", guard.after_failure)
                    raise self._failure(
                        m,
                        failed,
                        "this file runs outside a transaction: statements before this one are "
                        "committed" + (f"; {note}" if note else ""),
                    ) from failed
                finally:
                    longest = max(longest, self._monotonic() - started)
        self._guard(conn, m, "record the migration", lambda: self._in_transaction(conn, record))
        return {"longest_transaction": longest, "retries": retries}

    def _in_transaction(self, conn: Connection, action: Callable[[], None]) -> None:
        with conn.transaction():
            action()

    def _run_batched(
        self, conn: Connection, m: Migration, statements: tuple[Statement, ...], record: Callable[[], None]
    ) -> dict[str, Any]:
        """Walk the batch key range; each batch and its progress row commit together."""
        progress = self._guard(
            conn, m, "read the backfill progress", lambda: hist.read_progress(conn, m.version)
        )
        if progress is not None and progress.checksum != m.checksum:
            raise ChecksumMismatch(
                "the file was edited while its backfill was in progress",
                file=m.path,
                hint="restore the file as it was, or give up the backfill with 'slipway migrations abandon ENV "
                f"{m.version} --reason TEXT' and apply the fixed file from the start",
            )
        last_key = progress.last_key if progress else None
        batches, rows = (progress.batches, progress.rows) if progress else (0, 0)
        assert m.batch is not None
        budget = LockBudget(m.batch.budget, m.batch.size)
        retries, paused = 0, 0.0
        while True:
            for attempt in itertools.count():
                started = self._monotonic()
                try:
                    with conn.transaction():
                        step = self._one_batch(conn, m, statements, last_key, batches, rows, record, budget.size)
                    break
                except _Retry as retry:
                    self._backoff(m, retry, attempt)
                    retries += 1
                except _Failed as failed:
                    where = f"after key {last_key!r}" if last_key is not None else "from the start"
                    raise self._failure(
                        m, failed, f"{batches} batches are committed; the next run resumes {where}"
                    ) from failed
            held = self._monotonic() - started
            if step is None:
                return {
                    "longest_transaction": max(budget.held, default=held),
                    "retries": retries,
                    "batches": batches,
                    "rows": rows,
                    "resumed": progress is not None,
                    **lock_summary(budget.held),
                    "last_batch_size": budget.size,
                    "paused": paused,
                }
            last_key, changed, keys = step
            batches, rows = batches + 1, rows + changed
            pause = budget.after_batch(keys, held)
            if self.on_batch is not None:
                self.on_batch(BatchProgress(m.version, m.path, batches, changed, rows, last_key, held, budget.size))
            if pause or self.batch_pause:
                paused += pause
                self._sleep(pause + self.batch_pause)

    def _one_batch(
        self,
        conn: Connection,
        m: Migration,
        statements: tuple[Statement, ...],
        last_key: Any,
        batches: int,
        rows: int,
        record: Callable[[], None],
        size: int,
    ) -> tuple[Any, int, int] | None:
        """Run the next batch of ``size`` keys (inside a transaction): its last key, rows changed and keys.

        None when no keys are left (and the migration is recorded).
        """
        assert m.batch is not None
        spec = m.batch
        after = f" WHERE {spec.key} > %s" if last_key is not None else ""
        params = ([last_key] if last_key is not None else []) + [size]
        bounds_sql = (
            f"SELECT min(k), max(k), count(*) FROM (SELECT {spec.key} AS k FROM {spec.table}{after} "
            f"ORDER BY {spec.key} LIMIT %s) AS slipway_batch"
        )
        low, high, count = self._query(conn, f"batch bounds on {spec.table}.{spec.key}", bounds_sql, params)[
            0
        ]
        if not count:
            self._guard(conn, m, "record the migration", record)
            self._guard(conn, m, "clear the backfill progress", lambda: hist.clear_progress(conn, m.version))
            return None
        bounds = {BATCH_START: low, BATCH_END: high}
        changed = 0
        for statement in statements:
            changed += max(0, self._execute(conn, statement, statement.text, params=bounds))
        progress = hist.Progress(m.version, m.checksum, high, batches + 1, rows + changed)
        self._guard(
            conn, m, "save the backfill progress", lambda: hist.save_progress(conn, progress, now=self._now())
        )
        return high, changed, int(count)

    # -- statements and errors --------------------------------------------------------------------

    def _execute(
        self,
        conn: Connection,
        statement: Statement,
        sql: str,
        *,
        params: dict[str, Any] | None = None,
        before: Callable[[], None] | None = None,
    ) -> int:
        """Run one statement under the timeouts; _Retry on lock timeout, _Failed otherwise."""
        label = f"statement {statement.index} (line {statement.line}): {statement.short()}"
        try:
            conn.set_timeouts(lock_timeout=self.lock_timeout, statement_timeout=self.statement_timeout)
            if before is not None:
                before()
            return conn.execute(sql, params)
        except DatabaseFailure as failure:
            raise (_Retry if failure.lock_timeout else _Failed)(label, failure) from failure

    def _query(self, conn: Connection, label: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """A query of the runner's own under the timeouts; _Retry on lock timeout, _Failed otherwise."""
        try:
            conn.set_timeouts(lock_timeout=self.lock_timeout, statement_timeout=self.statement_timeout)
            return conn.query(sql, params)
        except DatabaseFailure as failure:
            raise (_Retry if failure.lock_timeout else _Failed)(label, failure) from failure

    def _guard(self, conn: Connection, m: Migration | None, what: str, action: Callable[[], Any]) -> Any:
        """Run bookkeeping; a database error becomes MigrationError (naming the file if there is one)."""
        try:
            return action()
        except DatabaseFailure as exc:
            raise MigrationError(f"cannot {what}: {exc.message}", file=m.path if m else "") from exc

    def _backoff(self, m: Migration, retry: _Retry, attempt: int) -> None:
        """Wait before the next try, or raise once ``lock_retries`` are used up."""
        if attempt >= self.lock_retries:
            raise MigrationError(
                f"{retry.label}: could not get a lock within {self.lock_timeout:g}s, "
                f"{attempt + 1} tries: {retry.failure.message}",
                file=m.path,
                hint="another session holds a conflicting lock (a long transaction?); find it in "
                "pg_stat_activity, or run the migration when traffic is lower",
            ) from retry
        self._sleep(self.retry_delay * (attempt + 1))

    def _failure(self, m: Migration, failed: _Failed, state: str) -> MigrationError:
        """The error for a failed statement, saying what state the database is in."""
        hint = state
        if failed.failure.statement_timeout:
            hint += f"; the statement ran longer than statement_timeout ({self.statement_timeout:g}s)"
        return MigrationError(f"{failed.label} failed: {failed.failure.message}", file=m.path, hint=hint)


def make_engine(database: str | sa.Engine, *, connect_timeout: float) -> tuple[sa.Engine, str]:
    """The engine to use and a URL to show (password hidden)."""
    if isinstance(database, sa.Engine):
        return database, database.url.render_as_string(hide_password=True)
    try:
        url = sa.make_url(database)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = max(1, int(connect_timeout))
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError) as exc:
        raise MigrationError(
            f"cannot use database URL: {exc}",
            hint="write it like postgresql+psycopg://user@host:5432/dbname or sqlite:///path/to/file.db",
        ) from exc
    return engine, url.render_as_string(hide_password=True)


def _verify_checksums(migrations: tuple[Migration, ...], applied: dict[int, hist.HistoryRow]) -> None:
    """Refuse to run anything when an applied migration's file was edited."""
    for m in migrations:
        row = applied.get(m.version)
        if row is not None and row.checksum != m.checksum:
            raise ChecksumMismatch(
                f"was applied on {row.applied_at:%Y-%m-%d %H:%M} UTC by {row.applied_by} with checksum "
                f"{row.checksum[:12]}, but the file now has checksum {m.checksum[:12]}",
                file=m.path,
                hint="an applied migration must not change: restore the file and put the change in a new one",
            )


def _check_order(pending: list[Migration], selected: list[Migration]) -> None:
    """A migration may not overtake an earlier pending one of its own or an earlier phase."""
    chosen = {m.version for m in selected}
    for m in selected:
        for earlier in pending:
            if earlier.version >= m.version:
                break
            if earlier.version not in chosen and earlier.phase.rank <= m.phase.rank:
                raise MigrationError(
                    f"cannot run before {earlier.filename} ({earlier.phase.value}), which is still pending",
                    file=m.path,
                    hint=f"apply the {earlier.phase.value} phase first",
                )
