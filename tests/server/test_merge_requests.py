"""Issue 14, merge requests from a forge's webhook: a signed pull_request event brings up the request's review
environment on a real ``slipway serve``, its outcome goes to the forge as a commit status, and the event
that closes the request tears the environment down.

No Git forge runs on these machines, so the forge's status API is a small HTTP server that records what
it receives (tests/support/receiver.py); the repository (a bare one, with the refs a forge keeps for requests), git,
the server, the webhook's signature and the app on its port are real.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Project
from tests.server.conftest import PATIENCE
from tests.server.test_triggers import Forge, git, serving_forge, signed
from tests.support.receiver import Receiver

pytestmark = pytest.mark.timeout(600)
TOKEN = "forge api token of the test"


def statuses(api: Receiver, state: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, Authorization, body) of the commit statuses the forge got, once one says ``state``."""
    api.wait_for(lambda posts: any(body["state"] == state for _, body in posts), timeout=PATIENCE)
    return [(p.path, p.headers.get("authorization", ""), p.body) for p in api.received]


@pytest.fixture
def api() -> Iterator[Receiver]:
    """The forge's commit-status API, as a recorder."""
    recorder = Receiver(status=201)
    yield recorder
    recorder.close()


@pytest.fixture
def forge(project: Project, tmp_path: Path, api: Receiver) -> Iterator[Forge]:
    project.env["FORGE_TOKEN"] = TOKEN
    extra = f"  forge: {{kind: github, api_url: {api.url}, repository: team/webapp, token: {{env: FORGE_TOKEN}}}}\n"
    with serving_forge(project, tmp_path, extra) as served:
        yield served


def pull_request(forge: Forge, number: int, action: str, head: str, *, merged: bool = False) -> httpx.Response:
    """Post the pull_request event GitHub sends, signed."""
    body = json.dumps({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number, "title": "A banner", "merged": merged,
            "head": {"sha": head, "ref": "feature"}, "base": {"ref": forge.branch},
        },
    }).encode()
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": signed(body), "Content-Type": "application/json"}  # fmt: skip
    return httpx.post(f"{forge.server.url}/api/hooks/webapp/github", content=body, headers=headers, timeout=60)


def answer(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError):
        return None


def reviews(forge: Forge) -> dict[int, dict[str, Any]]:
    """Every review environment, open and closed, by request number."""
    with forge.server.client("viewer") as c:
        return {r["number"]: r for r in c.get("/api/projects/webapp/reviews").json()}


def test_a_pull_request_gets_a_review_environment_a_status_and_loses_it_when_merged(forge: Forge, api: Receiver) -> None:
    number = random.randint(300, 900)  # the example's review port is 18600 + the number: apart from other tests
    git(forge.dev, "checkout", "-q", "-b", "feature")
    (forge.dev / "app/banner.txt").write_text("the feature's banner\n")
    git(forge.dev, "commit", "-qam", "feature: a banner", env=forge.project.env)
    head = git(forge.dev, "rev-parse", "HEAD")
    git(forge.dev, "push", "-q", "origin", "feature", env=forge.project.env)
    git(forge.bare, "update-ref", f"refs/pull/{number}/head", head)  # what GitHub keeps for the request

    opened = pull_request(forge, number, "opened", head)
    assert opened.status_code == 202, opened.text
    run = opened.json()["run"]
    assert run["kind"] == "merge-request" and [s["name"] for s in run["stages"]] == [
        "build", "unit-tests", f"deploy-review-{number}"]  # never a trunk environment, never a gate
    done = forge.server.wait_run("viewer", run["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert git(forge.project.root, "rev-parse", f"{done['commit']}^2") == head  # the merge result of the request

    review = reviews(forge)[number]
    health = answer(f"{review['url']}/health")
    assert health is not None and health["commit"] == done["commit"], health  # it answers, with the request's code
    calls = statuses(api, "success")
    assert [c[2]["state"] for c in calls] == ["pending", "success"]
    assert {c[0] for c in calls} == {f"/repos/team/webapp/statuses/{head}"}
    assert {c[1] for c in calls} == {f"Bearer {TOKEN}"} and calls[0][2]["context"] == "slipway"
    with forge.server.client("viewer") as c:
        envs = {e["name"]: e for e in c.get("/api/projects/webapp/status").json()["environments"]}
    assert all(e["release"] is None for e in envs.values()), envs  # no trunk environment got anything

    closed = pull_request(forge, number, "closed", head, merged=True)
    assert closed.status_code == 202 and closed.json()["outcome"] == "closing", closed.text
    deadline = time.monotonic() + PATIENCE
    while reviews(forge)[number]["state"] != "closed":
        assert time.monotonic() < deadline, reviews(forge)
        time.sleep(0.2)
    assert answer(f"{review['url']}/health") is None  # the app was stopped
    assert not (forge.project.root / f".slipway/targets/review-{number}").exists()  # the host holds nothing of it
    with forge.server.client("viewer") as c:
        assert c.get(f"/api/projects/webapp/runs/{run['id']}").json()["state"] == "succeeded"  # records kept


def test_a_failing_request_is_reported_as_a_failure_to_the_forge(forge: Forge, api: Receiver) -> None:
    number = random.randint(300, 900)
    git(forge.dev, "checkout", "-q", "-b", "broken")
    (forge.dev / "tests/unit/test_broken.py").write_text(
        "import unittest\n\nclass Broken(unittest.TestCase):\n    def test_it(self):\n        self.fail('broken')\n")
    git(forge.dev, "add", "-A", env=forge.project.env)
    git(forge.dev, "commit", "-qm", "a failing test", env=forge.project.env)
    head = git(forge.dev, "rev-parse", "HEAD")
    git(forge.dev, "push", "-q", "origin", "broken", env=forge.project.env)
    git(forge.bare, "update-ref", f"refs/pull/{number}/head", head)
    opened = pull_request(forge, number, "opened", head)
    assert opened.status_code == 202, opened.text
    assert forge.server.wait_run("viewer", opened.json()["run"]["id"], "succeeded", "failed")["state"] == "failed"
    failure = next(c for c in statuses(api, "failure") if c[2]["state"] == "failure")
    assert failure[0] == f"/repos/team/webapp/statuses/{head}" and "unit-tests" in failure[2]["description"]
    assert reviews(forge)[number]["state"] == "open"  # opened with the request; its deploy never ran
    assert not (forge.project.root / f".slipway/targets/review-{number}").exists()
