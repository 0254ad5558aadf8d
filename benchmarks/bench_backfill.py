"""Backfill 1,000,000 rows on PostgreSQL: the batched migrate phase against one UPDATE of the whole table.

Both start from the same table (``people``: id bigint primary key, name text, first_name and last_name
NULL) and fill ``first_name``/``last_name`` from ``name``. The batched run goes through
:class:`slipway.migrations.MigrationRunner` exactly as a deployment does (history, progress row per
batch, lock_timeout per statement). "Lock held" is the longest time one transaction held row locks on
the table: a batch for the migrate phase, the whole statement for the single UPDATE. A request that
writes a row being backfilled waits at most that long.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from tests.support.postgres import PostgresServer

from benchmarks.common import table
from slipway.migrations import BatchProgress, MigrationRunner, parse_migration

ROWS = 1_000_000
BATCH_SIZES = (1_000, 10_000)

SETUP = [
    "DROP TABLE IF EXISTS people",
    "DROP TABLE IF EXISTS slipway_schema_history",
    "DROP TABLE IF EXISTS slipway_migration_progress",
    "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, first_name text, last_name text)",
    f"INSERT INTO people (id, name) SELECT g, 'first' || g || ' last' || g FROM generate_series(1, {ROWS}) g",
    "VACUUM ANALYZE people",
]
FILL = "UPDATE people SET first_name = split_part(name, ' ', 1), last_name = split_part(name, ' ', 2)"


def _reset(engine: sa.Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for sql in SETUP:
            conn.exec_driver_sql(sql)


def _check(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        missing = conn.exec_driver_sql("SELECT count(*) FROM people WHERE last_name IS NULL").scalar()
    if missing:
        raise RuntimeError(f"backfill left {missing} rows without last_name")


def _batched(url: str, engine: sa.Engine, size: int) -> tuple[float, float, int]:
    """Seconds, longest batch transaction, batches: through the migration runner."""
    _reset(engine)
    text = f"-- slipway:batch table=people key=id size={size}\n{FILL}\nWHERE id BETWEEN :batch_start AND :batch_end;\n"
    migration = parse_migration("0002_migrate_split_name.sql", text)
    held: list[float] = []

    def on_batch(progress: BatchProgress) -> None:
        held.append(progress.held)

    runner = MigrationRunner(url, on_batch=on_batch, statement_timeout=None)
    started = time.perf_counter()
    [result] = runner.apply([migration], phases=["migrate"], applied_by="bench")
    elapsed = time.perf_counter() - started
    _check(engine)
    return elapsed, max(max(held), result.longest_transaction), result.batches


def _single(engine: sa.Engine) -> float:
    """Seconds of one UPDATE of every row in one transaction (its locks are held all that time)."""
    _reset(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(FILL)
    elapsed = time.perf_counter() - started
    _check(engine)
    return elapsed


def run() -> str:
    """Measure and return the markdown section."""
    with PostgresServer() as pg:
        url = pg.create_database("bench")
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            rows = []
            single = _single(engine)
            rows.append(
                [
                    "one `UPDATE` of the whole table",
                    "1",
                    f"{ROWS / single:,.0f}",
                    f"{single:.2f}",
                    f"{single * 1000:,.0f}",
                ]
            )
            for size in BATCH_SIZES:
                elapsed, longest, batches = _batched(url, engine, size)
                rows.append(
                    [
                        f"migrate phase, batches of {size:,}",
                        f"{batches:,}",
                        f"{ROWS / elapsed:,.0f}",
                        f"{elapsed:.2f}",
                        f"{longest * 1000:,.1f}",
                    ]
                )
        finally:
            engine.dispose()
    body = table(["backfill of 1,000,000 rows", "transactions", "rows/s", "total s", "longest lock held (ms)"], rows)
    return (
        "## Backfill: batched migrate phase against one UPDATE (PostgreSQL)\n\n"
        "Fill two new columns of a 1,000,000-row table from the old one. The migrate phase commits each batch "
        "with its progress row, so no row lock is held longer than one batch; one UPDATE holds every row's "
        "lock until the whole table is rewritten.\n\n" + body + "\n"
    )
