"""A backfill's lock budget: the runner sizes batches so that each holds its locks about ``budget`` long."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from migrations_support import Database, MakeMigration
from test_migrations_runner import schema, seed_users

from slipway.errors import MigrationError
from slipway.migrations import BatchProgress, MigrationRunner, parse_migration
from slipway.migrations.budget import MAX_GROWTH, LockBudget, lock_summary, percentile

pytestmark = pytest.mark.timeout(180)

#: Each row costs 2 ms of the batch's transaction on PostgreSQL: 1,000 rows would hold locks for 2 s.
SLOW_BACKFILL = (
    "-- slipway:batch table=users key=id size=1000 budget=50ms\n"
    "UPDATE users SET full_name = first_name || ' ' || last_name, n = n + 1\n"
    "WHERE id BETWEEN :batch_start AND :batch_end AND pg_sleep(0.002) IS NOT NULL;\n"
)


def test_the_budget_is_read_from_the_batch_header() -> None:
    m = parse_migration("db/0003_migrate_fill.sql", SLOW_BACKFILL)
    assert m.batch is not None and m.batch.budget == 0.05 and m.batch.size == 1000
    assert parse_migration("db/0003_migrate_fill.sql", SLOW_BACKFILL.replace("50ms", "0.2s")).batch.budget == 0.2  # type: ignore[union-attr]
    for bad in ("50", "fast", "0ms", "11s", "50 ms"):
        with pytest.raises(MigrationError, match=r"is not a time from 1ms to 10s|cannot read batch header") as info:
            parse_migration("db/0003_migrate_fill.sql", SLOW_BACKFILL.replace("budget=50ms", f"budget={bad}"))
        assert info.value.hint


def test_a_batch_over_budget_shrinks_the_next_and_a_fast_one_grows_it() -> None:
    budget = LockBudget(0.05, 1000)
    assert budget.after_batch(1000, 0.2) == 0.2  # four budgets: pause as long as it held the locks
    assert budget.size == 200  # 1000 rows in 0.2 s: 200 rows make 40 ms, 80% of the budget
    assert budget.after_batch(200, 0.04) == 0.0 and budget.size == 200
    assert budget.after_batch(200, 0.001) == 0.0 and budget.size == 400  # at most twice as large
    assert budget.after_batch(400, 40.0) > 0 and budget.size == 1  # far over: down at once
    assert LockBudget(None, 1000).after_batch(1000, 5.0) == 0.0  # no budget: a fixed size, no pause


@given(
    size=st.integers(min_value=1, max_value=1_000_000),
    rows=st.integers(min_value=0, max_value=1_000_000),
    held=st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_the_next_size_stays_within_its_bounds(size: int, rows: int, held: float) -> None:
    budget = LockBudget(0.05, size)
    budget.after_batch(rows, held)
    assert 1 <= budget.size <= 1_000_000
    assert budget.size <= max(1, size * MAX_GROWTH)


def test_percentiles_are_nearest_rank() -> None:
    held = [i / 1000 for i in range(1, 101)]
    assert percentile(held, 0.5) == 0.05 and percentile(held, 0.99) == 0.099
    assert lock_summary(held) == {"lock_p50": 0.05, "lock_p99": 0.099, "lock_max": 0.1}
    assert lock_summary([]) == {"lock_p50": 0.0, "lock_p99": 0.0, "lock_max": 0.0}


@pytest.mark.postgres
def test_a_slow_backfill_is_cut_into_batches_that_hold_their_locks_about_the_budget(
    postgres_url: str, make: MakeMigration
) -> None:
    db = Database(postgres_url)
    try:
        migrations = [*schema(make), make(3, "migrate", SLOW_BACKFILL, "backfill")]
        MigrationRunner(postgres_url).apply(migrations, phases=["expand"], applied_by="ci")
        seed_users(db, 3000)
        seen: list[BatchProgress] = []
        (result,) = MigrationRunner(postgres_url, on_batch=seen.append).apply(
            migrations, phases=["migrate"], applied_by="ci"
        )
        assert result.rows == 3000 and db.scalar("SELECT count(*) FROM users WHERE n = 1") == 3000
        # the first batch (1,000 rows of 2 ms) ran past the budget; the runner cut the next ones down
        assert seen[0].held > 1.0 and seen[0].next_size < 100
        assert result.batches > 10 and result.last_batch_size < 100
        assert result.paused >= seen[0].held  # it paused after the batch that ran over
        later = sorted(p.held for p in seen[2:])
        # the sizes track the budget: most later batches hold their locks near 40 ms, not 2 s
        assert later[len(later) // 2] < 0.1, later
        assert result.lock_max == max(p.held for p in seen) and result.lock_p50 <= result.lock_p99 <= result.lock_max
    finally:
        db.engine.dispose()
