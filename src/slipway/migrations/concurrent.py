"""Invalid indexes left by a failed CREATE INDEX CONCURRENTLY: find them, drop them, report them.

When a concurrent build fails (lock timeout, deadlock, a duplicate in a UNIQUE index, cancellation) or
the runner dies during it, PostgreSQL leaves the index behind marked invalid: it is not used for reads
but still costs every write, and ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` would then silently skip
the build. So, for a named index, an invalid leftover is dropped before the build and after a failed one.
For an unnamed index we cannot know which index is ours: the failure message lists the table's invalid
indexes instead of dropping anything.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from slipway.migrations._db import Connection
from slipway.migrations.statements import Dialect, Statement


class ConcurrentIndexGuard:
    """Cleans up around one statement; does nothing unless it is CREATE INDEX CONCURRENTLY."""

    def __init__(self, conn: Connection, statement: Statement, dialect: Dialect) -> None:
        self._conn = conn
        self.index: str | None = None
        self.table: str | None = None
        self.active = (
            dialect is Dialect.POSTGRES
            and statement.starts_with("CREATE")
            and "INDEX" in statement.keywords[:3]
            and "CONCURRENTLY" in statement.keywords[:4]
        )
        if self.active:
            self.index, self.table = _names(statement.text)

    def before(self) -> None:
        """Drop an invalid index of the same name left by an earlier failed build."""
        if self.active and self.index and self._is_invalid(self.index):
            self._conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {self.index}")

    def after_failure(self) -> str:
        """Clean up after a failed build; return a sentence for the error message ('' if nothing)."""
        if not self.active:
            return ""
        if self.index:
            if self._is_invalid(self.index):
                self._conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {self.index}")
                return f"the invalid index {self.index} left by the failed build was dropped"
            return ""
        if not self.table:
            return ""
        rows = self._conn.query(
            "SELECT i.indexrelid::regclass::text FROM pg_index i "
            "WHERE i.indrelid = to_regclass(%s) AND NOT i.indisvalid",
            (self.table,),
        )
        if not rows:
            return ""
        names = ", ".join(str(r[0]) for r in rows)
        return f"invalid indexes on {self.table}: {names}; drop them with DROP INDEX CONCURRENTLY"

    def _is_invalid(self, index: str) -> bool:
        rows = self._conn.query(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)", (index,)
        )
        return bool(rows) and rows[0][0] is False


def _names(sql: str) -> tuple[str | None, str | None]:
    """(schema-qualified index name, table name) of a CREATE INDEX statement, as SQL."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except (ParseError, TokenError):
        return None, None
    index = tree.this if isinstance(tree, exp.Create) else None
    if not isinstance(index, exp.Index):
        return None, None
    table = index.args.get("table")
    table_sql = table.sql(dialect="postgres") if isinstance(table, exp.Table) else None
    name = index.this
    if not isinstance(name, exp.Identifier):
        return None, table_sql
    schema = table.args.get("db") if isinstance(table, exp.Table) else None
    parts = [p.sql(dialect="postgres") for p in (schema, name) if p is not None]
    return ".".join(parts), table_sql
