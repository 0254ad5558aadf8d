"""The example app's data access: items in SQLite (the default) or PostgreSQL.

The schema is not created here: it lives in db/migrations/ and Slipway applies it before the release
starts (docs/migrations.md). Release 1 stores each item's ``name``.
"""

from __future__ import annotations

from typing import Any

from app.db import Database, connect

__all__ = ["Database", "add_item", "connect", "list_items"]


def add_item(db: Database, name: str) -> dict[str, Any]:
    """Insert an item and return it."""
    item_id = db.next_id("items")
    db.execute("INSERT INTO items (id, name) VALUES (?, ?)", (item_id, name))
    return {"id": item_id, "name": name}


def list_items(db: Database) -> list[dict[str, Any]]:
    """Every item, oldest first."""
    return [{"id": i, "name": n} for i, n in db.query("SELECT id, name FROM items ORDER BY id")]

