"""Acceptance tests against a deployed environment: SLIPWAY_URL and SLIPWAY_COMMIT come from Slipway."""

import json
import os
import unittest
import urllib.request

URL = os.environ.get("SLIPWAY_URL", "")


def call(method: str, path: str, body: object | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


class DeployedAppTest(unittest.TestCase):
    def test_health_reports_the_commit_under_test(self) -> None:
        status, body = call("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        self.assertEqual(body["commit"], os.environ["SLIPWAY_COMMIT"])

    def test_items_can_be_created_and_listed(self) -> None:
        status, item = call("POST", "/items", {"name": "acceptance"})
        self.assertEqual(status, 201)
        _, listing = call("GET", "/items")
        self.assertIn(item["id"], [i["id"] for i in listing["items"]])


if __name__ == "__main__":
    unittest.main()
