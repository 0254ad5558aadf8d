"""The runner on SQLite and on a real PostgreSQL: order, history, checksums, rollback, locks, backfills."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from migrations_support import Database, MakeMigration
from tests.support.ports import free_port

from slipway.errors import ChecksumMismatch, LintError, LockTimeout, MigrationError
from slipway.migrations import (
    BatchProgress,
    Migration,
    MigrationRunner,
    MigrationState,
    Phase,
    load_migrations,
)

pytestmark = pytest.mark.timeout(120)

USERS = "CREATE TABLE users (id integer PRIMARY KEY, first_name text, last_name text, n integer DEFAULT 0)"
BACKFILL = (
    "-- slipway:batch table=users key=id size=1000\n"
    "UPDATE users SET full_name = first_name || ' ' || last_name, n = n + 1\n"
    "WHERE id BETWEEN :batch_start AND :batch_end;\n"
)


class Interrupted(Exception):
    """Raised from on_batch to simulate a runner killed half way through a backfill."""


def schema(make: MakeMigration) -> list[Migration]:
    return [
        make(1, "expand", USERS + ";\n", "users"),
        make(2, "expand", "ALTER TABLE users ADD COLUMN full_name text;\n", "full_name"),
    ]


def seed_users(db: Database, count: int) -> None:
    db.run(
        "INSERT INTO users (id, first_name, last_name) VALUES (:id, :f, :l)",
        [{"id": i, "f": f"first{i}", "l": f"last{i}"} for i in range(1, count + 1)],
    )


def test_applies_in_version_order_and_records_history(db_url: str, db: Database, make: MakeMigration) -> None:
    migrations = [
        make(3, "expand", "INSERT INTO users (id, first_name) VALUES (1, 'ada');\n", "seed"),
        *schema(make),
    ]
    runner = MigrationRunner(db_url)
    results = runner.apply(migrations, phases=[Phase.EXPAND], applied_by="alice", release="r42")
    assert [r.version for r in results] == [1, 2, 3]
    assert all(r.duration >= r.longest_transaction > 0 for r in results)
    assert db.scalar("SELECT first_name FROM users WHERE id = 1") == "ada"
    rows = db.rows(
        "SELECT version, name, phase, checksum, applied_by, release, duration, overrides "
        "FROM slipway_schema_history ORDER BY version"
    )
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in rows] == [
        (1, "users", "expand", "alice", "r42"),
        (2, "full_name", "expand", "alice", "r42"),
        (3, "seed", "expand", "alice", "r42"),
    ]
    by_version = {m.version: m for m in migrations}
    assert all(r[3] == by_version[r[0]].checksum and r[6] >= 0 and json.loads(r[7]) == [] for r in rows)
    statuses = runner.status(migrations)
    assert [(s.version, s.state, s.applied_by) for s in statuses] == [
        (1, MigrationState.APPLIED, "alice"),
        (2, MigrationState.APPLIED, "alice"),
        (3, MigrationState.APPLIED, "alice"),
    ]
    assert all(s.applied_at is not None and s.applied_at.tzinfo is not None for s in statuses)


def test_rerun_is_idempotent(db_url: str, db: Database, make: MakeMigration) -> None:
    migrations = schema(make)
    runner = MigrationRunner(db_url)
    assert len(runner.apply(migrations, phases=["expand"], applied_by="ci")) == 2
    before = db.rows("SELECT * FROM slipway_schema_history ORDER BY version")
    assert runner.apply(migrations, phases=["expand"], applied_by="ci") == ()
    assert MigrationRunner(db_url).apply(migrations, phases=["expand"], applied_by="ci") == ()
    assert db.rows("SELECT * FROM slipway_schema_history ORDER BY version") == before


def test_loads_files_from_a_directory_and_applies_them(db_url: str, db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_expand_users.sql").write_text(USERS + ";\n")
    (folder / "0002_create_index.sql").write_text(
        "-- slipway:phase expand\n"
        '-- slipway:allow SW008 reason="users is empty when this runs"\n'
        "CREATE INDEX users_last ON users (last_name);\n"
    )
    runner = MigrationRunner(db_url)
    results = runner.apply(load_migrations(folder), phases=["expand"], applied_by="ci")
    assert [r.path for r in results] == [
        str(folder / "0001_expand_users.sql"),
        str(folder / "0002_create_index.sql"),
    ]
    if "sqlite" in db_url:
        assert results[1].overrides == ()  # SW008 is a PostgreSQL rule: nothing was overridden
    else:
        assert [(o.rule, o.reason) for o in results[1].overrides] == [("SW008", "users is empty when this runs")]
        stored = json.loads(db.scalar("SELECT overrides FROM slipway_schema_history WHERE version = 2"))
        assert stored == [{"rule": "SW008", "reason": "users is empty when this runs", "line": 2}]


def test_edited_migration_is_refused_before_anything_runs(db_url: str, db: Database, make: MakeMigration) -> None:
    runner = MigrationRunner(db_url)
    runner.apply(schema(make), phases=["expand"], applied_by="ci")
    edited = [make(1, "expand", USERS.replace("integer DEFAULT 0", "bigint DEFAULT 0") + ";\n", "users")]
    later = make(3, "expand", "CREATE TABLE other (a integer);\n", "other")
    with pytest.raises(ChecksumMismatch) as caught:
        runner.apply([*edited, schema(make)[1], later], phases=["expand"], applied_by="ci")
    assert "db/0001_expand_users.sql" in str(caught.value)
    assert "applied" in str(caught.value) and "ci" in str(caught.value)
    assert not db.has_table("other")
    states = {s.version: s.state for s in runner.status([*edited, later])}
    assert states == {1: MigrationState.CHANGED, 2: MigrationState.MISSING, 3: MigrationState.PENDING}


def test_failing_statement_rolls_the_migration_back(db_url: str, db: Database, make: MakeMigration) -> None:
    bad = make(3, "expand", "CREATE TABLE audit (id integer);\nINSERT INTO missing_table VALUES (1);\n", "audit")
    runner = MigrationRunner(db_url)
    with pytest.raises(MigrationError) as caught:
        runner.apply([*schema(make), bad], phases=["expand"], applied_by="ci")
    message = str(caught.value)
    assert message.startswith("db/0003_expand_audit.sql: statement 2 (line 2)")
    assert "missing_table" in message
    assert "rolled back" in caught.value.hint
    assert not db.has_table("audit")
    assert db.has_table("users")  # the migrations before it are committed
    assert [r[0] for r in db.rows("SELECT version FROM slipway_schema_history ORDER BY version")] == [1, 2]
    fixed = make(3, "expand", "CREATE TABLE audit (id integer);\n", "audit")
    assert [r.version for r in runner.apply([*schema(make), fixed], phases=["expand"], applied_by="ci")] == [3]


def test_syntax_error_leaves_the_database_unchanged(db_url: str, db: Database, make: MakeMigration) -> None:
    runner = MigrationRunner(db_url)
    runner.apply(schema(make), phases=["expand"], applied_by="ci")
    bad = make(3, "expand", "CREATE TABLE audit (id integer);\nCREAT TABLE more (id integer);\n", "audit")
    with pytest.raises(LintError) as linted:
        runner.apply([*schema(make), bad], phases=["expand"], applied_by="ci")
    assert linted.value.rule == "SW000"
    assert "db/0003_expand_audit.sql" in str(linted.value)
    with pytest.raises(MigrationError) as caught:  # the database's own check, with the linter off
        runner.apply([*schema(make), bad], phases=["expand"], applied_by="ci", lint=False)
    assert "db/0003_expand_audit.sql: statement 2 (line 2)" in str(caught.value)
    assert "CREAT" in str(caught.value)
    assert not db.has_table("audit")
    assert db.scalar("SELECT count(*) FROM slipway_schema_history") == 2


def test_lint_findings_stop_the_run_before_anything_runs(db_url: str, db: Database, make: MakeMigration) -> None:
    unsafe = make(3, "expand", "ALTER TABLE users DROP COLUMN last_name;\n", "drop")
    with pytest.raises(LintError) as caught:
        MigrationRunner(db_url).apply([*schema(make), unsafe], phases=["expand"], applied_by="ci")
    assert caught.value.rule == "SW001"
    assert not db.has_table("users")


def test_phases_run_separately_and_in_parallel_change_order(db_url: str, db: Database, make: MakeMigration) -> None:
    contract = make(3, "contract", "ALTER TABLE users DROP COLUMN last_name;\n", "drop_last")
    expand_later = make(4, "expand", "CREATE TABLE audit (id integer);\n", "audit")
    migrations = [*schema(make), contract, expand_later]
    runner = MigrationRunner(db_url)
    assert [m.version for m in runner.pending(migrations, phase="contract")] == [3]
    assert [r.version for r in runner.apply(migrations, phases=["expand"], applied_by="ci")] == [1, 2, 4]
    assert [m.version for m in runner.pending(migrations)] == [3]
    assert [r.version for r in runner.apply(migrations, phases=["contract"], applied_by="ci")] == [3]
    assert runner.pending(migrations) == ()


def test_a_contract_may_not_overtake_a_pending_expand(db_url: str, db: Database, make: MakeMigration) -> None:
    contract = make(3, "contract", "ALTER TABLE users DROP COLUMN last_name;\n", "drop_last")
    with pytest.raises(MigrationError, match=r"cannot run before 0001_expand_users.sql") as caught:
        MigrationRunner(db_url).apply([*schema(make), contract], phases=["contract"], applied_by="ci")
    assert "0003_contract_drop_last.sql" in str(caught.value)
    assert not db.has_table("slipway_schema_history") or db.scalar("SELECT count(*) FROM slipway_schema_history") == 0


def test_second_runner_fails_after_a_bounded_wait_naming_the_holder(
    db_url: str, db: Database, make: MakeMigration
) -> None:
    first = MigrationRunner(db_url)
    second = MigrationRunner(db_url, lock_wait=0.5)
    with first.lock(holder="alice@laptop"):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            second.apply(schema(make), phases=["expand"], applied_by="bob")
        waited = time.monotonic() - started
    assert 0.5 <= waited < 10
    assert "alice@laptop" in str(caught.value)
    assert "gave up after waiting 0.5s" in str(caught.value)
    assert caught.value.hint
    assert [r.version for r in second.apply(schema(make), phases=["expand"], applied_by="bob")] == [1, 2]


def test_concurrent_runners_one_applies_the_other_is_told_who(db_url: str, db: Database, make: MakeMigration) -> None:
    runner_setup = MigrationRunner(db_url)
    runner_setup.apply(schema(make), phases=["expand"], applied_by="setup")
    seed_users(db, 3000)
    backfill = make(3, "migrate", BACKFILL, "backfill")
    in_batch, release = threading.Event(), threading.Event()

    def pause(progress: BatchProgress) -> None:
        if progress.batch == 1:
            in_batch.set()
            assert release.wait(60)

    first = MigrationRunner(db_url, on_batch=pause)
    outcome: list[object] = []
    thread = threading.Thread(
        target=lambda: outcome.append(first.apply([*schema(make), backfill], phases=["migrate"], applied_by="alice"))
    )
    thread.start()
    try:
        assert in_batch.wait(60)
        with pytest.raises(LockTimeout) as caught:
            MigrationRunner(db_url, lock_wait=0.3).apply(
                [*schema(make), backfill], phases=["migrate"], applied_by="bob"
            )
    finally:
        release.set()
        thread.join(60)
    assert "alice" in str(caught.value)
    assert len(outcome) == 1 and db.scalar("SELECT count(*) FROM users WHERE n = 1") == 3000


def test_batched_backfill_commits_each_batch_and_resumes(db_url: str, db: Database, make: MakeMigration) -> None:
    migrations = [*schema(make), make(3, "migrate", BACKFILL, "backfill")]
    MigrationRunner(db_url).apply(migrations, phases=["expand"], applied_by="ci")
    seed_users(db, 10_000)
    seen: list[tuple[int, int, int]] = []

    def interrupt_after_three(progress: BatchProgress) -> None:
        committed = db.scalar("SELECT count(*) FROM users WHERE full_name IS NOT NULL")
        seen.append((progress.batch, progress.rows, committed))
        if progress.batch == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        MigrationRunner(db_url, on_batch=interrupt_after_three).apply(migrations, phases=["migrate"], applied_by="ci")
    assert seen == [(1, 1000, 1000), (2, 1000, 2000), (3, 1000, 3000)]  # visible from outside: committed
    (status,) = [s for s in MigrationRunner(db_url).status(migrations) if s.version == 3]
    assert (status.state, status.batches_done, status.rows_done) == (MigrationState.IN_PROGRESS, 3, 3000)

    batches: list[int] = []
    runner = MigrationRunner(db_url, on_batch=lambda p: batches.append(p.batch))
    (result,) = runner.apply(migrations, phases=["migrate"], applied_by="ci")
    assert batches == [4, 5, 6, 7, 8, 9, 10]
    assert (result.resumed, result.batches, result.rows) == (True, 10, 10_000)
    assert 0 < result.longest_transaction < result.duration
    assert db.scalar("SELECT count(*) FROM users WHERE n = 1 AND full_name = first_name || ' ' || last_name") == 10_000
    assert db.scalar("SELECT count(*) FROM slipway_migration_progress") == 0
    assert runner.status(migrations)[2].state is MigrationState.APPLIED


def test_backfill_edited_while_in_progress_is_refused(db_url: str, db: Database, make: MakeMigration) -> None:
    migrations = [*schema(make), make(3, "migrate", BACKFILL, "backfill")]
    MigrationRunner(db_url).apply(migrations, phases=["expand"], applied_by="ci")
    seed_users(db, 2500)

    def stop(progress: BatchProgress) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        MigrationRunner(db_url, on_batch=stop).apply(migrations, phases=["migrate"], applied_by="ci")
    edited = [*schema(make), make(3, "migrate", BACKFILL.replace("n + 1", "n + 2"), "backfill")]
    with pytest.raises(ChecksumMismatch, match=r"0003_migrate_backfill.sql: the file was edited while its backfill"):
        MigrationRunner(db_url).apply(edited, phases=["migrate"], applied_by="ci")


def test_backfill_of_an_empty_table_just_records_it(db_url: str, db: Database, make: MakeMigration) -> None:
    migrations = [*schema(make), make(3, "migrate", BACKFILL, "backfill")]
    runner = MigrationRunner(db_url)
    runner.apply(migrations, phases=["expand"], applied_by="ci")
    (result,) = runner.apply(migrations, phases=["migrate"], applied_by="ci")
    assert (result.batches, result.rows, result.resumed) == (0, 0, False)
    assert db.scalar("SELECT phase FROM slipway_schema_history WHERE version = 3") == "migrate"


def test_failing_batch_keeps_the_committed_batches(db_url: str, db: Database, make: MakeMigration) -> None:
    migrations = [*schema(make), make(3, "migrate", BACKFILL, "backfill")]
    MigrationRunner(db_url).apply(migrations, phases=["expand"], applied_by="ci")
    seed_users(db, 2500)
    db.run("CREATE TABLE guard (id integer PRIMARY KEY)")
    broken = make(
        3,
        "migrate",
        BACKFILL + "INSERT INTO guard (id) SELECT 1 WHERE :batch_end > 1500 AND :batch_start > 0;\n",
        "backfill",
    )
    db.run("INSERT INTO guard (id) VALUES (1)")
    with pytest.raises(MigrationError) as caught:
        MigrationRunner(db_url).apply([*schema(make), broken], phases=["migrate"], applied_by="ci")
    assert "0003_migrate_backfill.sql: statement 2" in str(caught.value)
    assert "1 batches are committed" in caught.value.hint
    assert db.scalar("SELECT count(*) FROM users WHERE n = 1") == 1000


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(lambda tmp: f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/app", id="postgres"),
        pytest.param(lambda tmp: f"postgresql://postgres@127.0.0.1:{free_port()}/app", id="postgres-bare"),
        pytest.param(lambda tmp: f"sqlite:///{tmp}/no/such/dir/app.db", id="sqlite"),
    ],
)
def test_unreachable_database_is_a_clear_migration_error(
    url: Callable[[Path], str], tmp_path: Path, make: MakeMigration
) -> None:
    runner = MigrationRunner(url(tmp_path), connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(MigrationError) as caught:
        runner.apply(schema(make), phases=["expand"], applied_by="ci")
    assert time.monotonic() - started < 10
    assert type(caught.value) is MigrationError
    assert str(caught.value).startswith("cannot connect to the database ")
    assert "running and reachable" in caught.value.hint
    with pytest.raises(MigrationError, match=r"cannot connect"):
        runner.status(schema(make))


@pytest.mark.parametrize("url", ["not a url", "mysql+nosuchdriver://x/y", "oracle://"])
def test_unusable_urls_are_migration_errors(url: str) -> None:
    with pytest.raises(MigrationError):
        MigrationRunner(url)


def test_password_is_hidden_in_messages(make: MakeMigration) -> None:
    runner = MigrationRunner(f"postgresql+psycopg://app:s3cret@127.0.0.1:{free_port()}/app", connect_timeout=2)
    with pytest.raises(MigrationError) as caught:
        runner.status()
    assert "s3cret" not in str(caught.value)


def test_status_of_a_fresh_database_lists_everything_pending_and_creates_nothing(
    db_url: str, db: Database, make: MakeMigration
) -> None:
    statuses = MigrationRunner(db_url).status(schema(make))
    assert [(s.version, s.state, s.applied_at) for s in statuses] == [
        (1, MigrationState.PENDING, None),
        (2, MigrationState.PENDING, None),
    ]
    assert not db.has_table("slipway_schema_history")


def test_applied_by_is_required(db_url: str, make: MakeMigration) -> None:
    with pytest.raises(MigrationError, match=r"applied_by"):
        MigrationRunner(db_url).apply(schema(make), phases=["expand"], applied_by=" ")


def test_empty_migration_file_is_an_error(db_url: str, make: MakeMigration) -> None:
    with pytest.raises(MigrationError, match=r"0001_expand_nothing.sql: the file contains no SQL statement"):
        MigrationRunner(db_url).apply(
            [make(1, "expand", "-- nothing yet\n", "nothing")], phases=["expand"], applied_by="ci"
        )


def _dead_pid() -> int:
    child = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True, timeout=10)
    return int(child.stdout)


def test_sqlite_lock_left_by_a_dead_runner_on_this_host_is_taken_over(sqlite_url: str, make: MakeMigration) -> None:
    MigrationRunner(sqlite_url).apply(schema(make)[:1], phases=["expand"], applied_by="ci")
    db = Database(sqlite_url)
    db.run(
        "INSERT INTO slipway_migration_lock VALUES (1, 'slipway-migrate ghost', :host, :pid, '2020-01-01T00:00:00')",
        {"host": socket.gethostname(), "pid": _dead_pid()},
    )
    (result,) = MigrationRunner(sqlite_url, lock_wait=0.5).apply(schema(make), phases=["expand"], applied_by="ci")
    assert result.version == 2
    assert db.scalar("SELECT count(*) FROM slipway_migration_lock") == 0
    db.engine.dispose()


def test_sqlite_lock_of_another_host_is_never_taken_over(sqlite_url: str, make: MakeMigration) -> None:
    MigrationRunner(sqlite_url).apply(schema(make)[:1], phases=["expand"], applied_by="ci")
    db = Database(sqlite_url)
    db.run(
        "INSERT INTO slipway_migration_lock VALUES (1, 'slipway-migrate carol pid=7 host=build-2', 'build-2', 7, "
        "'2020-01-01T00:00:00')"
    )
    with pytest.raises(LockTimeout) as caught:
        MigrationRunner(sqlite_url, lock_wait=0.3).apply(schema(make), phases=["expand"], applied_by="ci")
    assert "slipway-migrate carol pid=7 host=build-2 (since 2020-01-01T00:00:00)" in str(caught.value)
    assert "DELETE FROM slipway_migration_lock" in caught.value.hint
    db.engine.dispose()


def test_clock_and_sleep_are_injected(sqlite_url: str, make: MakeMigration) -> None:
    moments = iter(float(i) for i in range(1000))
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    runner = MigrationRunner(sqlite_url, monotonic=lambda: next(moments), now=lambda: fixed)
    results = runner.apply(schema(make), phases=["expand"], applied_by="ci")
    assert all(r.duration >= 1.0 for r in results)
    assert {s.applied_at for s in runner.status(schema(make))} == {fixed}
