"""Issue 14, notifications from runs that ``slipway serve`` drives: the same messages as the CLI's, naming
the user who signed in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Project
from tests.e2e.test_notifications import Receiver, configure
from tests.server.conftest import add_users, start_server, stop_server

pytestmark = pytest.mark.timeout(400)
P = "/api/projects/webapp"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_runs_the_server_drives_notify_who_started_and_who_approved(project: Project, receiver: Receiver) -> None:
    configure(
        project,
        "",
        f"""  - kind: webhook
    url: {receiver.url}/hook
    events: [approval_needed, deployment_succeeded]
    environments: [production]
    server_url: https://slipway.example.com
""",
    )
    server = start_server(project, add_users(project))
    try:
        with server.client("deployer") as c:
            started = c.post(f"{P}/runs", json={})
        assert started.status_code == 202, started.text
        run = server.wait_run("viewer", started.json()["id"], "waiting", "failed", "succeeded")
        assert run["state"] == "waiting"
        [(_, gate)] = receiver.wait_for(lambda p: len(p) >= 1)
        assert (gate["event"], gate["environment"], gate["by"]) == ("approval_needed", "production", "deployer")
        assert gate["url"] == f"https://slipway.example.com/projects/webapp/runs/{run['id']}"
        with server.client("approver") as c:
            c.post(f"{P}/runs/{run['id']}/approve", json={"reason": "go"}).raise_for_status()
        assert server.wait_run("viewer", run["id"], "succeeded", "failed")["state"] == "succeeded"
        posts = receiver.wait_for(lambda p: len(p) >= 2)
    finally:
        stop_server(server)
    deployed = posts[1][1]
    assert (deployed["event"], deployed["environment"], deployed["by"]) == ("deployment_succeeded", "production", "approver")
    assert len(posts) == 2  # dev's deployment is filtered out: the receiver wants production only
