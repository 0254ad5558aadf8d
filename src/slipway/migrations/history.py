"""The tables the runner keeps in the application's database.

``slipway_schema_history``: one row per applied migration (version, name, phase, checksum, applied_at,
applied_by, duration in seconds, the lint overrides as JSON, the release that shipped it).
``slipway_migration_progress``: one row per backfill in progress (last key committed, batches, rows), so
an interrupted migrate file resumes where it stopped. ``slipway_migration_lock`` (SQLite only): the lock
row naming the runner that holds it; PostgreSQL uses an advisory lock instead.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slipway.errors import MigrationError
from slipway.migrations._db import Connection
from slipway.migrations.files import Migration, Override, Phase
from slipway.migrations.results import MigrationState, MigrationStatus
from slipway.migrations.statements import Dialect

HISTORY_TABLE = "slipway_schema_history"
PROGRESS_TABLE = "slipway_migration_progress"
LOCK_TABLE = "slipway_migration_lock"

_DDL = {
    Dialect.POSTGRES: (
        f"""CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, phase TEXT NOT NULL, checksum TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL, applied_by TEXT NOT NULL, duration DOUBLE PRECISION NOT NULL,
            overrides TEXT NOT NULL, release TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
            version BIGINT PRIMARY KEY, checksum TEXT NOT NULL, last_key TEXT NOT NULL,
            batches BIGINT NOT NULL, rows_done BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
    ),
    Dialect.SQLITE: (
        f"""CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, phase TEXT NOT NULL, checksum TEXT NOT NULL,
            applied_at TEXT NOT NULL, applied_by TEXT NOT NULL, duration REAL NOT NULL,
            overrides TEXT NOT NULL, release TEXT)""",
        f"""CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
            version INTEGER PRIMARY KEY, checksum TEXT NOT NULL, last_key TEXT NOT NULL,
            batches INTEGER NOT NULL, rows_done INTEGER NOT NULL, updated_at TEXT NOT NULL)""",
    ),
}


@dataclass(frozen=True)
class HistoryRow:
    """One applied migration as recorded."""

    version: int
    name: str
    phase: Phase
    checksum: str
    applied_at: datetime
    applied_by: str
    duration: float
    overrides: tuple[Override, ...]
    release: str | None


@dataclass(frozen=True)
class Progress:
    """A backfill in progress: the last key committed and the totals so far."""

    version: int
    checksum: str
    last_key: Any
    batches: int
    rows: int
    #: When the last batch committed (None for a progress row built in memory).
    updated_at: datetime | None = None


def ensure_tables(conn: Connection) -> None:
    """Create the history and progress tables if they do not exist (inside a transaction)."""
    for ddl in _DDL[conn.dialect]:
        conn.execute(ddl)


def table_exists(conn: Connection, name: str) -> bool:
    """True when ``name`` exists in the connection's schema search path."""
    if conn.dialect is Dialect.POSTGRES:
        return conn.query("SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0] is True
    return bool(conn.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", (name,)))


def read_history(conn: Connection) -> dict[int, HistoryRow]:
    """Every applied migration by version; empty when the table does not exist yet."""
    if not table_exists(conn, HISTORY_TABLE):
        return {}
    rows = conn.query(
        "SELECT version, name, phase, checksum, applied_at, applied_by, duration, overrides, release "
        f"FROM {HISTORY_TABLE} ORDER BY version"
    )
    return {int(r[0]): _history_row(r) for r in rows}


def _history_row(row: tuple[Any, ...]) -> HistoryRow:
    version, name, phase, digest, applied_at, applied_by, duration, overrides, release = row
    return HistoryRow(
        version=int(version),
        name=str(name),
        phase=Phase(phase),
        checksum=str(digest),
        applied_at=_as_datetime(applied_at),
        applied_by=str(applied_by),
        duration=float(duration),
        overrides=tuple(
            Override(o["rule"], o["reason"], int(o.get("line", 0))) for o in json.loads(overrides)
        ),
        release=release,
    )


def record_applied(
    conn: Connection,
    migration: Migration,
    *,
    applied_at: datetime,
    applied_by: str,
    duration: float,
    overrides: tuple[Override, ...],
    release: str | None,
) -> None:
    """Insert the history row for ``migration`` (call inside the migration's transaction)."""
    encoded = json.dumps([{"rule": o.rule, "reason": o.reason, "line": o.line} for o in overrides])
    conn.execute(
        f"INSERT INTO {HISTORY_TABLE} (version, name, phase, checksum, applied_at, applied_by, duration, "
        "overrides, release) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            migration.version,
            migration.name,
            migration.phase.value,
            migration.checksum,
            _db_time(conn, applied_at),
            applied_by,
            duration,
            encoded,
            release,
        ),
    )


def read_progress(conn: Connection, version: int) -> Progress | None:
    """The backfill progress of ``version``, if one is under way."""
    if not table_exists(conn, PROGRESS_TABLE):
        return None
    rows = conn.query(
        f"SELECT version, checksum, last_key, batches, rows_done FROM {PROGRESS_TABLE} WHERE version = %s",
        (version,),
    )
    if not rows:
        return None
    version_, digest, last_key, batches, done = rows[0]
    return Progress(int(version_), str(digest), decode_key(last_key), int(batches), int(done))


def read_all_progress(conn: Connection) -> dict[int, Progress]:
    """Every backfill under way, by version."""
    if not table_exists(conn, PROGRESS_TABLE):
        return {}
    rows = conn.query(f"SELECT version, checksum, last_key, batches, rows_done, updated_at FROM {PROGRESS_TABLE}")
    return {
        int(r[0]): Progress(int(r[0]), str(r[1]), decode_key(r[2]), int(r[3]), int(r[4]), _as_datetime(r[5]))
        for r in rows
    }


def save_progress(conn: Connection, progress: Progress, *, now: datetime) -> None:
    """Upsert the progress row (call inside the batch's transaction, so it commits with the batch)."""
    conn.execute(f"DELETE FROM {PROGRESS_TABLE} WHERE version = %s", (progress.version,))
    conn.execute(
        f"INSERT INTO {PROGRESS_TABLE} (version, checksum, last_key, batches, rows_done, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (
            progress.version,
            progress.checksum,
            encode_key(progress.last_key),
            progress.batches,
            progress.rows,
            _db_time(conn, now),
        ),
    )


def clear_progress(conn: Connection, version: int) -> None:
    """Forget the progress of a finished backfill."""
    conn.execute(f"DELETE FROM {PROGRESS_TABLE} WHERE version = %s", (version,))


def encode_key(value: Any) -> str:
    """A batch key as JSON that keeps its type (integer, text or UUID keys)."""
    if isinstance(value, bool) or not isinstance(value, int | str | uuid.UUID):
        raise MigrationError(
            f"batch key values of type {type(value).__name__} are not supported",
            hint="batch over an integer, text or uuid key column (usually the primary key)",
        )
    kind = "uuid" if isinstance(value, uuid.UUID) else type(value).__name__
    return json.dumps({"type": kind, "value": str(value) if kind == "uuid" else value})


def decode_key(text: str) -> Any:
    """The inverse of :func:`encode_key`."""
    data = json.loads(text)
    return uuid.UUID(data["value"]) if data["type"] == "uuid" else data["value"]


def _db_time(conn: Connection, moment: datetime) -> Any:
    """A timestamp as the driver wants it (sqlite3's datetime adapter is deprecated: use ISO text)."""
    return moment.isoformat() if conn.dialect is Dialect.SQLITE else moment


def _as_datetime(value: Any) -> datetime:
    """A stored timestamp as an aware datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def status_of(version: int, m: Migration | None, row: HistoryRow | None, progress: Progress | None) -> MigrationStatus:
    """The status of one version from its file, its history row and its backfill progress."""
    if row is not None:
        if m is None:
            state = MigrationState.MISSING
        elif row.checksum != m.checksum:
            state = MigrationState.CHANGED
        else:
            state = MigrationState.APPLIED
        return MigrationStatus(
            version=version,
            name=row.name,
            phase=row.phase,
            state=state,
            path=m.path if m else None,
            checksum=m.checksum if m else None,
            applied_at=row.applied_at,
            applied_by=row.applied_by,
            duration=row.duration,
            overrides=row.overrides,
            release=row.release,
        )
    if m is None:  # a backfill in progress whose file was not given: its progress row still tells
        assert progress is not None
        return MigrationStatus(
            version=version,
            name="",
            phase=Phase.MIGRATE,
            state=MigrationState.IN_PROGRESS,
            path=None,
            **_progress_fields(progress),
        )
    return MigrationStatus(
        version=version,
        name=m.name,
        phase=m.phase,
        state=MigrationState.IN_PROGRESS if progress is not None else MigrationState.PENDING,
        path=m.path,
        checksum=m.checksum,
        **(_progress_fields(progress) if progress is not None else {}),
    )


def _progress_fields(progress: Progress) -> dict[str, Any]:
    return {
        "batches_done": progress.batches,
        "rows_done": progress.rows,
        "last_key": progress.last_key,
        "progress_checksum": progress.checksum,
        "progress_at": progress.updated_at,
    }
