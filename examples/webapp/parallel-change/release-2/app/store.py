"""The example app's data access: items in SQLite (the default) or PostgreSQL.

The schema is not created here: it lives in db/migrations/ and Slipway applies it before the release
starts (docs/migrations.md). Release 2 is the middle of a parallel change: it writes ``name`` and the new
``first_name``/``last_name`` (so release 1 still sees every item), and reads the new columns, falling
back to ``name`` for rows the backfill has not reached or that release 1 wrote meanwhile.
"""

from __future__ import annotations

from typing import Any

from app.db import Database, connect

__all__ = ["Database", "add_item", "connect", "list_items", "split_name"]


def split_name(name: str) -> tuple[str, str]:
    """``"Ada King Lovelace"`` -> ``("Ada King", "Lovelace")``: the same rule as the backfill's SQL."""
    first, _, last = name.rpartition(" ")
    return (first.rstrip(), last) if first.strip() else (name, "")


def _item(item_id: int, name: str | None, first: str | None, last: str | None) -> dict[str, Any]:
    if first is None:  # not backfilled yet (or written by release 1 meanwhile): fall back
        first, last = split_name(name or "")
    full = f"{first} {last}".strip()
    return {"id": item_id, "name": full, "first_name": first, "last_name": last}


def add_item(db: Database, name: str) -> dict[str, Any]:
    """Insert an item (old and new columns) and return it; oldest first in listings."""
    first, last = split_name(name)
    item_id = db.next_id("items")
    db.execute(
        "INSERT INTO items (id, name, first_name, last_name) VALUES (?, ?, ?, ?)", (item_id, name, first, last)
    )
    return _item(item_id, name, first, last)


def list_items(db: Database) -> list[dict[str, Any]]:
    """Every item, oldest first."""
    rows = db.query("SELECT id, name, first_name, last_name FROM items ORDER BY id")
    return [_item(*row) for row in rows]
