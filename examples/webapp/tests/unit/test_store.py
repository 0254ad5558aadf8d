"""Unit tests of the example app (standard library unittest: no dependencies to install)."""

import os
import re
import sqlite3
import tempfile
import unittest
from pathlib import Path

from app import store

MIGRATIONS = Path(__file__).resolve().parents[2] / "db" / "migrations"


def migrate(path: str) -> None:
    """Apply db/migrations to a fresh SQLite file the simple way (Slipway does it for real deployments):
    every file in order, a migrate file's batch placeholders spanning every key."""
    conn = sqlite3.connect(path)
    try:
        for file in sorted(MIGRATIONS.glob("*.sql"), key=lambda p: int(p.name.split("_")[0])):
            sql = file.read_text().replace(":batch_start", "0").replace(":batch_end", str(2**62))
            conn.executescript(re.sub(r"--[^\n]*", "", sql))
        conn.commit()
    finally:
        conn.close()


class StoreTest(unittest.TestCase):
    def test_items_round_trip(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "app.db")
            migrate(path)
            with store.connect(path) as db:
                first = store.add_item(db, "Ada Lovelace")
                store.add_item(db, "Grace Hopper")
            with store.connect("sqlite:///" + path) as db:
                items = store.list_items(db)
        self.assertEqual(first["name"], "Ada Lovelace")
        self.assertEqual([i["name"] for i in items], ["Ada Lovelace", "Grace Hopper"])
        self.assertEqual([i["id"] for i in items], [1, 2])


if __name__ == "__main__":
    unittest.main()
