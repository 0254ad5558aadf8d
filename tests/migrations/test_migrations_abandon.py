"""The runner's view of a backfill in progress without its file, and ``MigrationRunner.abandon``."""

from __future__ import annotations

import pytest
from migrations_support import Database, MakeMigration
from test_migrations_runner import BACKFILL, Interrupted, schema, seed_users

from slipway.errors import ChecksumMismatch, MigrationError
from slipway.migrations import BatchProgress, MigrationRunner, MigrationState

pytestmark = pytest.mark.timeout(120)


def interrupted_backfill(db_url: str, db: Database, make: MakeMigration) -> None:
    """Two batches of 1000 committed, then the runner stops."""
    migrations = [*schema(make), make(3, "migrate", BACKFILL, "backfill")]
    MigrationRunner(db_url).apply(migrations, phases=["expand"], applied_by="ci")
    seed_users(db, 3000)

    def stop_after_two(progress: BatchProgress) -> None:
        if progress.batch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        MigrationRunner(db_url, on_batch=stop_after_two).apply(migrations, phases=["migrate"], applied_by="ci")


def test_a_backfill_in_progress_shows_without_its_file(db_url: str, db: Database, make: MakeMigration) -> None:
    interrupted_backfill(db_url, db, make)
    runner = MigrationRunner(db_url)
    (orphan,) = [s for s in runner.status(schema(make)) if s.version == 3]
    assert (orphan.state, orphan.path, orphan.batches_done, orphan.rows_done) == (MigrationState.IN_PROGRESS, None, 2, 2000)
    assert orphan.last_key == 2000 and orphan.progress_at is not None and orphan.progress_checksum
    assert runner.pending(schema(make)) == ()  # nothing to run without the file


def test_abandon_forgets_the_progress_and_a_fixed_file_runs_from_the_start(
    db_url: str, db: Database, make: MakeMigration
) -> None:
    interrupted_backfill(db_url, db, make)
    fixed = make(3, "migrate", BACKFILL.replace("n = n + 1", "n = 1"), "backfill")
    with pytest.raises(ChecksumMismatch, match="edited while its backfill was in progress") as caught:
        MigrationRunner(db_url).apply([*schema(make), fixed], phases=["migrate"], applied_by="ci")
    assert "migrations abandon" in (caught.value.hint or "")
    (edited,) = [s for s in MigrationRunner(db_url).status([*schema(make), fixed]) if s.version == 3]
    assert edited.state is MigrationState.IN_PROGRESS and edited.is_edited_backfill

    progress = MigrationRunner(db_url).abandon(3, holder="alice")
    assert (progress.version, progress.batches, progress.rows, progress.last_key) == (3, 2, 2000, 2000)
    assert db.scalar("SELECT count(*) FROM slipway_migration_progress") == 0
    assert db.scalar("SELECT count(*) FROM users WHERE n = 1") == 2000  # committed batches stay
    (pending,) = [s for s in MigrationRunner(db_url).status([*schema(make), fixed]) if s.version == 3]
    assert pending.state is MigrationState.PENDING

    (result,) = MigrationRunner(db_url).apply([*schema(make), fixed], phases=["migrate"], applied_by="ci")
    assert (result.resumed, result.batches, result.rows) == (False, 3, 3000)
    assert db.scalar("SELECT count(*) FROM users WHERE n = 1") == 3000

    with pytest.raises(MigrationError, match="only a backfill in progress"):
        MigrationRunner(db_url).abandon(3, holder="alice")
    with pytest.raises(MigrationError, match="no backfill in progress"):
        MigrationRunner(db_url).abandon(4, holder="alice")
