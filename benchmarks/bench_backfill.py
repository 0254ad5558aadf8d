"""Backfill 1,000,000 rows on PostgreSQL: the batched migrate phase against one UPDATE of the whole table.

Both start from the same table (``people``: id bigint primary key, name text, first_name and last_name
NULL) and fill ``first_name``/``last_name`` from ``name``. The batched run goes through
:class:`slipway.migrations.MigrationRunner` exactly as a deployment does (history, progress row per
batch, lock_timeout per statement). "Lock held" is the longest time one transaction held row locks on
the table: a batch for the migrate phase, the whole statement for the single UPDATE. A request that
writes a row being backfilled waits at most that long.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from tests.support.postgres import PostgresServer

from benchmarks.common import table
from slipway.migrations import MigrationRunner, parse_migration

ROWS = 1_000_000
BATCH_SIZES = (1_000, 10_000)
BUDGET, BUDGET_START = "50ms", 1_000
RUNS = 3

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


def _batched(url: str, engine: sa.Engine, size: int, budget: str = "") -> dict[str, float]:
    """One backfill through the migration runner: seconds, batches, and the batches' lock times."""
    _reset(engine)
    extra = f" budget={budget}" if budget else ""
    text = f"-- slipway:batch table=people key=id size={size}{extra}\n{FILL}\nWHERE id BETWEEN :batch_start AND :batch_end;\n"
    migration = parse_migration("0002_migrate_split_name.sql", text)
    runner = MigrationRunner(url, statement_timeout=None)
    started = time.perf_counter()
    [result] = runner.apply([migration], phases=["migrate"], applied_by="bench")
    elapsed = time.perf_counter() - started
    _check(engine)
    return {"s": elapsed, "batches": result.batches, "p50": result.lock_p50, "p99": result.lock_p99,
            "max": result.lock_max, "paused": result.paused}


def _single(engine: sa.Engine) -> float:
    """Seconds of one UPDATE of every row in one transaction (its locks are held all that time)."""
    _reset(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(FILL)
    elapsed = time.perf_counter() - started
    _check(engine)
    return elapsed


def _spread(values: list[float], scale: float = 1000, digits: int = 1) -> str:
    return f"{statistics.median(values) * scale:,.{digits}f} ({min(values) * scale:,.{digits}f}-{max(values) * scale:,.{digits}f})"


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run() -> str:
    """Measure every way RUNS times, interleaved, and return the markdown section."""
    ways = [("one `UPDATE` of the whole table", 0, "")] + [
        (f"batches of {size:,}", size, "") for size in BATCH_SIZES
    ] + [(f"budget {BUDGET} (first batch {BUDGET_START:,})", BUDGET_START, BUDGET)]
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in ways}
    loads = [_load()]
    with PostgresServer() as pg:
        url = pg.create_database("bench")
        engine = sa.create_engine(url, poolclass=NullPool)
        try:
            for _ in range(RUNS):
                for name, size, budget in ways:
                    if size == 0:
                        single = _single(engine)
                        samples[name].append({"s": single, "batches": 1, "p50": single, "p99": single, "max": single})
                    else:
                        samples[name].append(_batched(url, engine, size, budget))
                loads.append(_load())
        finally:
            engine.dispose()
    rows = []
    for name, runs in samples.items():
        rows.append([
            name, f"{statistics.median(r['batches'] for r in runs):,.0f}",
            _spread([r["s"] for r in runs], 1, 2), _spread([r["p50"] for r in runs]),
            _spread([r["p99"] for r in runs]), _spread([r["max"] for r in runs]),
        ])
    body = table(["backfill of 1,000,000 rows", "transactions", "total s", "lock held p50 (ms)",
                  "p99 (ms)", "max (ms)"], rows)
    return (
        "## Backfill: batched migrate phase against one UPDATE (PostgreSQL)\n\n"
        "Fill two new columns of a 1,000,000-row table from the old one. The migrate phase commits each batch "
        "with its progress row, so no row lock is held longer than one batch; one UPDATE holds every row's "
        f"lock until the whole table is rewritten. With `budget={BUDGET}` the runner sizes each batch from the "
        "last one's lock time (docs/migrations.md). Median (min-max) of "
        f"{RUNS} interleaved runs; the lock times are each run's percentiles over its batches. Load average "
        f"before and after each round: {'; '.join(loads)}.\n\n" + body + "\n"
    )
