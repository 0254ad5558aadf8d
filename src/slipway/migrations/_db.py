"""The database seam of the runner: one DBAPI connection with explicit transactions, per dialect.

The runner works on the raw DBAPI connection (psycopg 3 or sqlite3) that SQLAlchemy hands out, because
it must control transactions exactly: autocommit for CREATE INDEX CONCURRENTLY, ``BEGIN IMMEDIATE`` on
SQLite (whose driver would otherwise run DDL outside any transaction), and the author's SQL sent as
written, without SQLAlchemy's bind-parameter parsing. Every driver error is translated here into
:class:`DatabaseFailure` (internal) and from there into Slipway's errors by the runner; nothing from
SQLAlchemy or the drivers leaves the package.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import DBAPIConnection

from slipway.errors import MigrationError
from slipway.migrations.statements import Dialect

#: Parameters for a statement: a sequence for ``%s`` placeholders, a mapping for ``:name`` ones.
Params = Sequence[Any] | Mapping[str, Any] | None

_PG_LOCK_NOT_AVAILABLE = "55P03"
_PG_QUERY_CANCELED = "57014"
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)\b")


class DatabaseFailure(Exception):
    """A driver error, translated: the database's message and whether waiting for a lock caused it."""

    def __init__(self, message: str, *, lock_timeout: bool = False, statement_timeout: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout


def dialect_of(engine: sa.Engine) -> Dialect:
    """The Slipway dialect of a SQLAlchemy engine; MigrationError for unsupported databases."""
    name = engine.dialect.name
    if name == "postgresql":
        return Dialect.POSTGRES
    if name == "sqlite":
        return Dialect.SQLITE
    raise MigrationError(f"migrations support PostgreSQL and SQLite, not {name}")


class Connection:
    """A DBAPI connection in autocommit mode with explicit transactions and translated errors."""

    def __init__(self, engine: sa.Engine, *, display_url: str) -> None:
        self.dialect = dialect_of(engine)
        self.display_url = display_url
        self._error: type[Exception] = engine.dialect.loaded_dbapi.Error
        try:
            self._proxy = engine.raw_connection()
        except (sa.exc.SQLAlchemyError, self._error) as exc:
            raise MigrationError(
                f"cannot connect to the database {display_url}: {_describe(exc)}",
                hint="check that the database server is running and reachable and that the URL is right",
            ) from exc
        raw = self._proxy.driver_connection
        assert raw is not None
        self.raw: DBAPIConnection = raw
        self._saved = self._enter_autocommit()
        self.in_transaction = False

    def _enter_autocommit(self) -> object:
        """Switch the driver to autocommit; return the setting to restore on close."""
        raw: Any = self.raw
        if self.dialect is Dialect.POSTGRES:
            saved = raw.autocommit
            raw.rollback()
            raw.autocommit = True
            return saved
        saved = raw.isolation_level
        raw.rollback()
        raw.isolation_level = None
        return saved

    def close(self) -> None:
        """Restore the driver's settings and hand the connection back to the pool."""
        raw: Any = self.raw
        with contextlib.suppress(Exception):
            if self.dialect is Dialect.POSTGRES:
                raw.execute("RESET application_name")
                raw.execute("RESET lock_timeout")
                raw.execute("RESET statement_timeout")
                raw.autocommit = self._saved
            else:
                raw.isolation_level = self._saved
        with contextlib.suppress(Exception):
            self._proxy.close()

    # -- statements ------------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement; return its row count (-1 when the driver does not know)."""
        with self.translate():
            cursor = self._cursor_execute(sql, params)
            count = int(getattr(cursor, "rowcount", -1))
            cursor.close()
            return count

    def query(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""
        with self.translate():
            cursor = self._cursor_execute(sql, params)
            rows = [tuple(row) for row in cursor.fetchall()]
            cursor.close()
            return rows

    def _cursor_execute(self, sql: str, params: Params) -> Any:
        """Execute on a new cursor, adapting placeholders to the driver."""
        cursor: Any = self.raw.cursor()
        if params is None:
            cursor.execute(sql)
        elif isinstance(params, Mapping):
            cursor.execute(self.named(sql), dict(params))
        else:
            marker = "?" if self.dialect is Dialect.SQLITE else "%s"
            cursor.execute(sql.replace("%s", marker), tuple(params))
        return cursor

    def named(self, sql: str) -> str:
        """``:name`` placeholders in the driver's style (psycopg: ``%(name)s``, with ``%`` doubled)."""
        if self.dialect is Dialect.SQLITE:
            return sql
        return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN (IMMEDIATE on SQLite) ... COMMIT, or ROLLBACK when the block raises."""
        begin = "BEGIN IMMEDIATE" if self.dialect is Dialect.SQLITE else "BEGIN"
        self.execute(begin)
        self.in_transaction = True
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self.execute("ROLLBACK")
            raise
        else:
            self.execute("COMMIT")
        finally:
            self.in_transaction = False

    @contextlib.contextmanager
    def translate(self) -> Iterator[None]:
        """Turn driver errors into DatabaseFailure, noting lock and statement timeouts."""
        try:
            yield
        except self._error as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> DatabaseFailure:
        message = _describe(exc)
        if self.dialect is Dialect.POSTGRES:
            state = getattr(exc, "sqlstate", None)
            return DatabaseFailure(
                message,
                lock_timeout=state == _PG_LOCK_NOT_AVAILABLE,
                statement_timeout=state == _PG_QUERY_CANCELED,
            )
        locked = "database is locked" in message or "database table is locked" in message
        return DatabaseFailure(message, lock_timeout=locked)

    # -- settings ---------------------------------------------------------------------------------

    def set_timeouts(self, *, lock_timeout: float, statement_timeout: float | None) -> None:
        """PostgreSQL: SET lock_timeout and statement_timeout; SQLite: the busy timeout."""
        lock_ms = max(1, int(lock_timeout * 1000))
        if self.dialect is Dialect.SQLITE:
            self.execute(f"PRAGMA busy_timeout = {lock_ms}")
            return
        self.execute(f"SET lock_timeout = '{lock_ms}ms'")
        statement_ms = 0 if statement_timeout is None else max(1, int(statement_timeout * 1000))
        self.execute(f"SET statement_timeout = '{statement_ms}ms'")

    def set_application_name(self, name: str) -> None:
        """PostgreSQL: name this session in pg_stat_activity (how another runner finds the holder)."""
        if self.dialect is Dialect.POSTGRES:
            self.query("SELECT set_config('application_name', %s, false)", (name[:63],))


def _describe(exc: BaseException) -> str:
    """The useful part of a driver or SQLAlchemy error message."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("(Background")]
    return " ".join(lines[:3]) if lines else type(original).__name__
