"""What the runner reports: per-migration results, batch progress and the status of each migration."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipway.migrations.files import Override, Phase


class MigrationState(enum.StrEnum):
    """Where one migration stands in one database."""

    #: Applied, and the file still has the checksum it was applied with.
    APPLIED = "applied"
    #: Not applied yet.
    PENDING = "pending"
    #: A migrate file whose backfill started and did not finish: the next run resumes it (also shown when
    #: no file with its version was given: the progress row is the database's own record).
    IN_PROGRESS = "in-progress"
    #: Applied, but the file was edited since: the runner refuses to run until it is restored.
    CHANGED = "changed"
    #: Applied, but no file with its version was given.
    MISSING = "missing"


@dataclass(frozen=True)
class MigrationResult:
    """What applying one migration did."""

    version: int
    name: str
    phase: Phase
    path: str
    #: Seconds from the first statement to the commit of the history row (retries included).
    duration: float
    #: The longest time one transaction was held open (a batch, for migrate files), in seconds.
    longest_transaction: float
    statements: int
    batches: int = 0
    rows: int = 0
    #: Lock-timeout retries used.
    retries: int = 0
    #: True when a migrate file continued a backfill that an earlier run had started.
    resumed: bool = False
    #: A migrate file's batches: median, 99th percentile and longest time one held its locks (seconds).
    lock_p50: float = 0.0
    lock_p99: float = 0.0
    lock_max: float = 0.0
    #: With a lock budget: the size the last batch had, and how long the runner paused for slow batches.
    last_batch_size: int = 0
    paused: float = 0.0
    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class BatchProgress:
    """Passed to the runner's ``on_batch`` callback after each batch commits."""

    version: int
    path: str
    #: Batches committed so far for this migration, this one included (also across resumed runs).
    batch: int
    #: Rows this batch changed.
    rows: int
    total_rows: int
    last_key: Any
    #: Seconds this batch held its transaction.
    held: float
    #: The size of the next batch (the declared size, or what the lock budget made it).
    next_size: int = 0


@dataclass(frozen=True)
class MigrationStatus:
    """One migration in :meth:`MigrationRunner.status`."""

    version: int
    name: str
    phase: Phase
    state: MigrationState
    #: The file, when one was given for this version.
    path: str | None
    #: The checksum of that file (None without one).
    checksum: str | None = None
    applied_at: datetime | None = None
    applied_by: str | None = None
    duration: float | None = None
    overrides: tuple[Override, ...] = ()
    release: str | None = None
    batches_done: int = 0
    rows_done: int = 0
    #: An in-progress backfill's progress row: the last key committed, the checksum of the file it
    #: started with, and when its last batch committed.
    last_key: Any = None
    progress_checksum: str | None = None
    progress_at: datetime | None = None

    @property
    def is_edited_backfill(self) -> bool:
        """True for an in-progress backfill whose file differs from the one its committed batches ran."""
        return self.progress_checksum is not None and self.checksum is not None and (
            self.checksum != self.progress_checksum
        )
