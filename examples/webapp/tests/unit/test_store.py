"""Unit tests of the example app (standard library unittest: no dependencies to install)."""

import os
import tempfile
import unittest

from app import store


class StoreTest(unittest.TestCase):
    def test_items_round_trip(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "app.db")
            with store.connect(path) as conn:
                store.ensure_schema(conn)
                first = store.add_item(conn, "apple")
                store.add_item(conn, "pear")
            with store.connect(path) as conn:
                items = store.list_items(conn)
        self.assertEqual(first["name"], "apple")
        self.assertEqual([i["name"] for i in items], ["apple", "pear"])


if __name__ == "__main__":
    unittest.main()
