"""PostgreSQL only: CONCURRENTLY in autocommit, invalid indexes, lock and statement timeouts, holders."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from migrations_support import Database, MakeMigration
from sqlalchemy.pool import NullPool
from tests.support.postgres import PostgresServer

from slipway.errors import LockTimeout, MigrationError
from slipway.migrations import MigrationRunner

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

USERS = "CREATE TABLE users (id integer PRIMARY KEY, email text, n integer DEFAULT 0);\n"


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    yield database
    database.engine.dispose()


def conninfo(url: str) -> str:
    parsed = sa.make_url(url)
    return f"host={parsed.host} port={parsed.port} user={parsed.username} dbname={parsed.database}"


def index_state(pg: Database, name: str) -> bool | None:
    """True valid, False invalid, None missing."""
    state = pg.scalar("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(:n)", n=name)
    return None if state is None else bool(state)


def setup_users(url: str, pg: Database, make: MakeMigration, rows: int, *, duplicate: bool = False) -> None:
    MigrationRunner(url).apply([make(1, "expand", USERS, "users")], phases=["expand"], applied_by="ci")
    pg.run(
        "INSERT INTO users (id, email) SELECT g, 'user' || g || '@example.com' FROM generate_series(1, :n) g",
        {"n": rows},
    )
    if duplicate:
        pg.run("UPDATE users SET email = 'same@example.com' WHERE id IN (1, 2)")


def test_create_index_concurrently_runs_outside_a_transaction(
    postgres_url: str, pg: Database, make: MakeMigration
) -> None:
    setup_users(postgres_url, pg, make, 5000)
    index = make(2, "expand", "CREATE INDEX CONCURRENTLY users_email ON users (email);\n", "index")
    (result,) = MigrationRunner(postgres_url).apply(
        [make(1, "expand", USERS, "users"), index], phases=["expand"], applied_by="ci"
    )
    assert result.version == 2 and result.retries == 0
    assert index_state(pg, "users_email") is True
    drop = make(3, "contract", "DROP INDEX CONCURRENTLY users_email;\n", "drop_index")
    MigrationRunner(postgres_url).apply(
        [make(1, "expand", USERS, "users"), index, drop], phases=["contract"], applied_by="ci"
    )
    assert index_state(pg, "users_email") is None


def test_failed_concurrent_build_drops_its_invalid_index_and_says_so(
    postgres_url: str, pg: Database, make: MakeMigration
) -> None:
    setup_users(postgres_url, pg, make, 2000, duplicate=True)
    unique = make(2, "expand", "CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);\n", "unique")
    migrations = [make(1, "expand", USERS, "users"), unique]
    with pytest.raises(MigrationError) as caught:
        MigrationRunner(postgres_url).apply(migrations, phases=["expand"], applied_by="ci")
    message = f"{caught.value}\n{caught.value.hint}"
    assert "0002_expand_unique.sql: statement 1" in message
    assert "duplicate" in message.lower()
    assert "invalid index users_email_key left by the failed build was dropped" in message
    assert index_state(pg, "users_email_key") is None
    pg.run("UPDATE users SET email = 'other@example.com' WHERE id = 2")
    MigrationRunner(postgres_url).apply(migrations, phases=["expand"], applied_by="ci")
    assert index_state(pg, "users_email_key") is True


def test_invalid_leftover_from_a_crashed_run_is_rebuilt_not_skipped(
    postgres_url: str, pg: Database, make: MakeMigration
) -> None:
    setup_users(postgres_url, pg, make, 1000, duplicate=True)
    with psycopg.connect(conninfo(postgres_url), autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email)")
    assert index_state(pg, "users_email_key") is False  # what a crashed build leaves behind
    pg.run("UPDATE users SET email = 'other@example.com' WHERE id = 2")
    sql = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);\n"
    MigrationRunner(postgres_url).apply(
        [make(1, "expand", USERS, "users"), make(2, "expand", sql, "unique")],
        phases=["expand"],
        applied_by="ci",
    )
    assert index_state(pg, "users_email_key") is True


def test_unnamed_failed_concurrent_build_lists_the_invalid_indexes(
    postgres_url: str, pg: Database, make: MakeMigration
) -> None:
    setup_users(postgres_url, pg, make, 500, duplicate=True)
    unique = make(2, "expand", "CREATE UNIQUE INDEX CONCURRENTLY ON users (email);\n", "unique")
    with pytest.raises(MigrationError) as caught:
        MigrationRunner(postgres_url).apply(
            [make(1, "expand", USERS, "users"), unique], phases=["expand"], applied_by="ci"
        )
    assert "invalid indexes on users: users_email_idx" in caught.value.hint


def test_lock_timeout_is_retried_a_bounded_number_of_times(
    postgres_url: str, pg: Database, make: MakeMigration
) -> None:
    setup_users(postgres_url, pg, make, 10)
    add = make(2, "expand", "ALTER TABLE users ADD COLUMN note text;\n", "note")
    waits: list[float] = []
    runner = MigrationRunner(postgres_url, lock_timeout=0.2, lock_retries=2, retry_delay=0.01, sleep=waits.append)
    with psycopg.connect(conninfo(postgres_url)) as blocker:
        blocker.execute("LOCK TABLE users IN ACCESS SHARE MODE")  # a long read transaction
        with pytest.raises(MigrationError) as caught:
            runner.apply([make(1, "expand", USERS, "users"), add], phases=["expand"], applied_by="ci")
        blocker.rollback()
    assert "0002_expand_note.sql: statement 1 (line 1)" in str(caught.value)
    assert "could not get a lock within 0.2s, 3 tries" in str(caught.value)
    assert waits == [0.01, 0.02]
    assert pg.scalar("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == 0


def test_lock_timeout_retry_succeeds_once_the_lock_is_free(
    postgres_url: str, pg: Database, make: MakeMigration
) -> None:
    setup_users(postgres_url, pg, make, 10)
    add = make(2, "expand", "ALTER TABLE users ADD COLUMN note text;\n", "note")
    with psycopg.connect(conninfo(postgres_url)) as blocker:
        blocker.execute("LOCK TABLE users IN ACCESS SHARE MODE")
        runner = MigrationRunner(postgres_url, lock_timeout=0.2, sleep=lambda _: blocker.rollback())
        (result,) = runner.apply([make(1, "expand", USERS, "users"), add], phases=["expand"], applied_by="ci")
    assert result.retries == 1
    assert pg.scalar("SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == 1


def test_statement_timeout_stops_a_runaway_statement(postgres_url: str, pg: Database, make: MakeMigration) -> None:
    slow = make(1, "expand", "CREATE TABLE t (a integer);\nSELECT pg_sleep(5);\n", "slow")
    with pytest.raises(MigrationError) as caught:
        MigrationRunner(postgres_url, statement_timeout=0.3).apply([slow], phases=["expand"], applied_by="ci")
    assert "statement timeout" in str(caught.value)
    assert "statement_timeout (0.3s)" in caught.value.hint
    assert not pg.has_table("t")


def test_lock_holder_is_named_from_pg_stat_activity(postgres_url: str, make: MakeMigration) -> None:
    holder = MigrationRunner(postgres_url)
    with holder.lock(holder="alice@laptop"), pytest.raises(LockTimeout) as caught:
        MigrationRunner(postgres_url, lock_wait=0.2).status()  # reading needs no lock
        MigrationRunner(postgres_url, lock_wait=0.2).apply([], phases=["expand"], applied_by="bob")
    message = str(caught.value)
    assert "'slipway-migrate alice@laptop pid=" in message
    assert "backend pid" in message and "user postgres" in message
    assert "pg_terminate_backend" in caught.value.hint


def test_the_lock_is_released_when_its_holder_dies(postgres_url: str, pg: Database) -> None:
    holding, finish = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with MigrationRunner(postgres_url).lock(holder="doomed"):
                holding.set()
                assert finish.wait(30)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(30)
        killed = pg.scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'slipway-migrate doomed%'"
        )
        assert killed == 1
        with MigrationRunner(postgres_url, lock_wait=5).lock(holder="next"):
            pass
    finally:
        finish.set()
        thread.join(30)
    assert errors == []  # releasing a lock whose session is gone is not an error


def test_a_given_engine_gets_its_connection_back_as_it_was(postgres_url: str, make: MakeMigration) -> None:
    engine = sa.create_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        MigrationRunner(engine).apply([make(1, "expand", USERS, "users")], phases=["expand"], applied_by="ci")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW application_name").scalar() != "slipway-migrate ci"
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "0"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
            conn.exec_driver_sql("CREATE TABLE rolled_back (a integer)")
            conn.rollback()  # still transactional: autocommit was restored
            assert not sa.inspect(conn).has_table("rolled_back")
    finally:
        engine.dispose()


def test_postgres_server_cleans_up_after_itself() -> None:
    server = PostgresServer()
    with server:
        root = server.root
        assert root is not None and root.exists()
        url = server.create_database("scratch")
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/scratch"
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            assert str(conn.exec_driver_sql("SHOW server_version").scalar()).startswith("15")
            assert conn.exec_driver_sql("SHOW listen_addresses").scalar() == "127.0.0.1"
        engine.dispose()
        server.drop_database("scratch")
        with pytest.raises(ValueError, match="database name"):
            server.create_database("Robert'); DROP")
        conninfo_ = server.conninfo()
    assert not root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo_).close()
    server.stop()  # a second stop is harmless
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_fixture_gives_each_test_a_fresh_database(postgres_url: str, postgres_server: PostgresServer) -> None:
    assert postgres_url.startswith(f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/test_")
    engine = sa.create_engine(postgres_url, poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").scalar() == 0
    engine.dispose()
