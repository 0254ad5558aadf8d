"""Which release applied which framework migration: ``slipway_alembic_history`` (Alembic),
``slipway_django_history`` (Django), ``slipway_command_history`` (``tool: command``) in the application's database.

The tool's own version table holds only what is applied (Alembic's only the current head); this table, next to it and next to
``slipway_schema_history`` of the ``.sql`` files, keeps one row per revision Slipway applied: its phase,
file, who, when, how long, with which release and which lint rules its ``allow`` waived. It is written
right after the revision's upgrade committed (Alembic's env.py owns that transaction): the version table
is the truth of what is applied, this table says by whom.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from slipway.errors import MigrationError
from slipway.migrations._db import Connection, DatabaseFailure
from slipway.migrations.files import Override, Phase
from slipway.migrations.framework import Revision
from slipway.migrations.history import _as_datetime, _db_time, table_exists
from slipway.migrations.statements import Dialect

TABLE = "slipway_alembic_history"
#: The history table of each framework tool.
TABLES = {"alembic": TABLE, "django": "slipway_django_history", "command": "slipway_command_history"}
_TIME = {Dialect.POSTGRES: "TIMESTAMPTZ", Dialect.SQLITE: "TEXT"}
_FLOAT = {Dialect.POSTGRES: "DOUBLE PRECISION", Dialect.SQLITE: "REAL"}


@dataclass(frozen=True)
class RevisionRecord:
    """One revision as Slipway applied it."""

    revision: str
    name: str
    phase: Phase
    path: str
    applied_at: datetime
    applied_by: str
    duration: float
    release: str | None
    overrides: tuple[Override, ...] = ()


def _connect(url: str, connect_timeout: float) -> Connection:
    from slipway.migrations.runner import make_engine

    engine, display = make_engine(url, connect_timeout=connect_timeout)
    return Connection(engine, display_url=display)


def read_records(url: str, *, connect_timeout: float, table: str = TABLE) -> dict[str, RevisionRecord]:
    """Every revision Slipway applied to the database, by revision id (empty before the first)."""
    conn = _connect(url, connect_timeout)
    try:
        if not table_exists(conn, table):
            return {}
        rows = conn.query(
            "SELECT revision, name, phase, path, applied_at, applied_by, duration, release, overrides "
            f"FROM {table} ORDER BY applied_at"
        )
    except DatabaseFailure as exc:
        raise MigrationError(f"cannot read {table}: {exc.message}") from exc
    finally:
        conn.close()
    return {str(r[0]): _record(r) for r in rows}


def _record(row: tuple[Any, ...]) -> RevisionRecord:
    revision, name, phase, path, applied_at, applied_by, duration, release, overrides = row
    return RevisionRecord(
        revision=str(revision),
        name=str(name),
        phase=Phase(phase),
        path=str(path),
        applied_at=_as_datetime(applied_at),
        applied_by=str(applied_by),
        duration=float(duration),
        release=release,
        overrides=tuple(Override(o["rule"], o["reason"], 0) for o in json.loads(overrides or "[]")),
    )


def record_applied(
    url: str,
    revision: Revision,
    *,
    connect_timeout: float,
    applied_at: datetime,
    applied_by: str,
    duration: float,
    release: str,
    overrides: Iterable[Override],
    table: str = TABLE,
) -> None:
    """Write (or replace) the row of ``revision``, creating the table on first use."""
    conn = _connect(url, connect_timeout)
    try:
        with conn.transaction():
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (revision TEXT PRIMARY KEY, name TEXT NOT NULL, "
                f"phase TEXT NOT NULL, path TEXT NOT NULL, applied_at {_TIME[conn.dialect]} NOT NULL, "
                f"applied_by TEXT NOT NULL, duration {_FLOAT[conn.dialect]} NOT NULL, release TEXT, "
                "overrides TEXT NOT NULL)"
            )
            conn.execute(f"DELETE FROM {table} WHERE revision = %s", (revision.revision,))
            conn.execute(
                f"INSERT INTO {table} (revision, name, phase, path, applied_at, applied_by, duration, release, "
                "overrides) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    revision.revision,
                    revision.name,
                    revision.phase.value,
                    revision.path,
                    _db_time(conn, applied_at),
                    applied_by,
                    duration,
                    release,
                    json.dumps([{"rule": o.rule, "reason": o.reason} for o in overrides]),
                ),
            )
    except (DatabaseFailure, sa.exc.SQLAlchemyError) as exc:
        raise MigrationError(
            f"revision {revision.revision} was applied, but recording it in {table} failed: {exc}",
            file=revision.path,
            hint="the database has the revision (the tool's own table says so); only Slipway's record of "
            "who applied it is missing",
        ) from exc
    finally:
        conn.close()
