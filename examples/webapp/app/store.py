"""The example app's data access: items in SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    """A connection that commits on success and always closes."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the table on first start."""
    conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL)")


def add_item(conn: sqlite3.Connection, name: str) -> dict[str, object]:
    """Insert an item and return it."""
    cur = conn.execute("INSERT INTO items (name) VALUES (?)", (name,))
    return {"id": cur.lastrowid, "name": name}


def list_items(conn: sqlite3.Connection) -> list[dict[str, object]]:
    """Every item, oldest first."""
    return [{"id": i, "name": n} for i, n in conn.execute("SELECT id, name FROM items ORDER BY id")]
