"""Canary ``on_success: pause`` through the CLI: the deployment parks after a healthy bake, the process
exits, and a person continues it (``slipway approve``) or aborts it (``slipway reject``: the canary
hosts go back) from a new process. Three local targets, each app on its own port."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import yaml

from tests.e2e.conftest import Project
from tests.e2e.conftest import project as project  # the fixture
from tests.support.ports import free_port

HOSTS = ("web-1", "web-2", "web-3")


def paused_canary(project: Project) -> dict[str, int]:
    config = yaml.safe_load((project.root / "slipway.yml").read_text())
    config.pop("migrations", None)
    ports = {h: free_port() for h in HOSTS}
    config["environments"] = {
        "production": {
            "vars": {"port": 0},
            "targets": [
                {"kind": "local", "name": h, "path": f".slipway/targets/{h}", "vars": {"port": p}}
                for h, p in ports.items()
            ],
            "strategy": {
                "kind": "canary", "canary_hosts": 1, "bake_time": 0.3, "check_interval": 0.1,
                "on_success": "pause", "batch_size": 2,
            },
        }
    }
    config["pipeline"] = [
        {"name": "build", "kind": "build"},
        {"name": "deploy", "kind": "deploy", "environment": "production"},
    ]
    (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("production: a canary that waits for a person")
    return ports


def commit_on(port: int) -> str:
    """The commit the app on ``port`` serves. No waiting: a host put back by ``reject`` is restarted by its
    activate hooks, and the example's restart returns only once the app serves (examples/webapp/bin)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
        return str(json.loads(resp.read())["commit"])


def latest(project: Project) -> dict[str, Any]:
    return project.json("deployments", "production")[0]  # type: ignore[no-any-return]


def test_a_paused_canary_goes_on_when_approved_and_goes_back_when_rejected(project: Project) -> None:
    ports = paused_canary(project)
    one = project.json("run")
    assert one["state"] == "waiting", one
    parked = latest(project)
    assert parked["state"] == "waiting" and parked["strategy"] == "canary"
    assert {h["host"]: h["state"] for h in parked["hosts"]} == {"web-1": "succeeded", "web-2": "pending", "web-3": "pending"}
    first = commit_on(ports["web-1"])

    approved = project.json("approve", str(one["id"]), "--reason", "canary looks good")  # a new process
    assert approved["state"] == "succeeded", approved
    assert [commit_on(p) for p in ports.values()] == [first] * 3
    done = latest(project)
    assert done["id"] == parked["id"] and done["state"] == "succeeded"
    assert {h["state"] for h in done["hosts"]} == {"succeeded"} and len(done["hosts"]) == 3

    project.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
    two = project.commit("release 2")
    second = project.json("run")
    assert second["state"] == "waiting"
    assert [commit_on(p) for p in ports.values()] == [two, first, first]
    blocked = project.slipway("rollback", "production", "--reason", "while the canary waits", check=False)
    assert blocked.returncode == 9 and "waits for a decision after its canary" in blocked.stderr, blocked.stderr

    rejected = project.slipway("reject", str(second["id"]), "--reason", "error rate up")
    assert f"run {second['id']} rejected" in rejected.stdout
    assert [commit_on(p) for p in ports.values()] == [first] * 3
    aborted = next(d for d in project.json("deployments", "production") if d["run_id"] == second["id"])
    assert aborted["state"] == "failed"
    assert aborted["reason"].startswith("deployment of production rejected after its canary (rejected by tester")
    assert project.json("history")[0]["state"] in ("failed",)
