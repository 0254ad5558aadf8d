"""Helpers shared by the migration tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from slipway.migrations import Migration

MakeMigration = Callable[..., Migration]


class Database:
    """Direct access to the test database, beside the runner, to check what it did."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=NullPool)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def run(self, sql: str, params: list[dict[str, Any]] | dict[str, Any] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params or {})

    def has_table(self, name: str) -> bool:
        return sa.inspect(self.engine).has_table(name)
