"""The example app's data access: items in SQLite (the default) or PostgreSQL.

The schema is not created here: it lives in db/migrations/ and Slipway applies it before the release
starts (docs/migrations.md). Release 3 ends the parallel change: it reads and writes only ``first_name``
and ``last_name``, so the contract migration that drops ``name`` can run once no release 2 is left.
"""

from __future__ import annotations

from typing import Any

from app.db import Database, connect

__all__ = ["Database", "add_item", "connect", "list_items", "split_name"]


def split_name(name: str) -> tuple[str, str]:
    """``"Ada King Lovelace"`` -> ``("Ada King", "Lovelace")``: the same rule as the backfill's SQL."""
    first, _, last = name.rpartition(" ")
    return (first.rstrip(), last) if first.strip() else (name, "")


def _item(item_id: int, first: str, last: str) -> dict[str, Any]:
    return {"id": item_id, "name": f"{first} {last}".strip(), "first_name": first, "last_name": last}


def add_item(db: Database, name: str) -> dict[str, Any]:
    """Insert an item and return it; oldest first in listings."""
    first, last = split_name(name)
    item_id = db.next_id("items")
    db.execute("INSERT INTO items (id, first_name, last_name) VALUES (?, ?, ?)", (item_id, first, last))
    return _item(item_id, first, last)


def list_items(db: Database) -> list[dict[str, Any]]:
    """Every item, oldest first."""
    rows = db.query("SELECT id, first_name, last_name FROM items ORDER BY id")
    return [_item(i, f or "", lst or "") for i, f, lst in rows]
