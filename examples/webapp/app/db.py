"""One small seam over sqlite3 and psycopg, so the same app runs on SQLite (default) and PostgreSQL.

URLs: ``sqlite:///path/app.db`` (or a plain file path), ``postgresql://...`` or the SQLAlchemy spelling
``postgresql+psycopg://...`` that slipway.yml uses. psycopg is imported only for PostgreSQL, so the
default needs nothing beyond the standard library.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class Database:
    """A connection inside one transaction; ``?`` placeholders on both databases."""

    def __init__(self, conn: Any, *, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement."""
        self.conn.execute(self._sql(sql), tuple(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""
        return list(self.conn.execute(self._sql(sql), tuple(params)).fetchall())

    def next_id(self, table: str) -> int:
        """The next id of ``table``. One schema file serves both databases, and an auto-increment column
        is spelled differently in each; the server serialises its inserts, and PostgreSQL's table lock
        below keeps two processes (old and new release during a switch) from taking the same id."""
        if self.postgres:
            self.conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        elif not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")  # the write lock first, then read the max
        return int(self.query(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")[0][0])


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database."""
    return url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://"))


@contextmanager
def connect(url: str) -> Iterator[Database]:
    """A session that commits on success, rolls back on error and always closes."""
    if is_postgres(url):
        import psycopg  # only PostgreSQL needs it

        conn: Any = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), connect_timeout=10)
    else:
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
        conn = sqlite3.connect(path, timeout=10)
    try:
        yield Database(conn, postgres=is_postgres(url))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
