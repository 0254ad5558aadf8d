"""Merge requests end to end: the example project in a real git repository, a feature branch, the real CLI.

``slipway review up`` builds and tests the merge result and deploys it to the request's review environment,
which answers at its URL with the feature's change; ``slipway review down`` stops it and removes its deploy
root and database, keeping every record. The trunk environments get nothing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from slipway.services import review
from slipway.services.app import open_app
from slipway.testing import FakeClock
from tests.e2e.conftest import Project
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(300)


def git(project: Project, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project.root, env=project.env, check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()


def health(url: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
        return json.loads(resp.read())


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        return False


def feature_branch(project: Project) -> tuple[str, str, int]:
    """A review port range of its own; a feature branch changing /health; a later commit on the trunk.
    Returns (trunk branch, feature head, the review port of request 7)."""
    port = free_port()
    project.edit("slipway.yml", "{{ 18600 + review.number }}", f"{{{{ {port - 7} + review.number }}}}")
    project.commit("review ports of this test")
    trunk = git(project, "rev-parse", "--abbrev-ref", "HEAD")
    git(project, "checkout", "-q", "-b", "feature")
    project.edit("app/server.py", '{"status": "ok", **release_info()}', '{"status": "ok", "feature": "review-me", **release_info()}')
    head = project.commit("feature: /health says review-me")
    git(project, "checkout", "-q", trunk)
    (project.root / "app/trunk_only.txt").write_text("a later trunk commit\n")
    project.commit("trunk moves on")
    return trunk, head, port


def test_a_merge_request_gets_a_review_environment_and_loses_it_when_merged(project: Project) -> None:
    trunk, head, port = feature_branch(project)
    url = f"http://127.0.0.1:{port}"

    # The run follows the merge result's slipway.yml: a working tree that differs does not stop it.
    (project.root / "slipway.yml").write_text((project.root / "slipway.yml").read_text() + "# not committed\n")
    started = project.slipway("review", "up", "7", "--head", head, "--target", trunk, "--branch", "feature", "--json")
    assert "the working tree's is not compared" in started.stderr
    up = json.loads(started.stdout)
    merge = git(project, "rev-parse", "refs/slipway/merge-requests/7/merge")
    assert git(project, "rev-parse", f"{merge}^1", f"{merge}^2").split() == [git(project, "rev-parse", trunk), head]
    assert (up["kind"], up["state"], up["commit"], up["review_url"]) == ("merge-request", "succeeded", merge, url)
    assert up["merge_request"] == 7
    assert [(s["name"], s["kind"], s["environment"]) for s in up["stages"]] == [
        ("build", "build", None),
        ("unit-tests", "test", None),
        ("deploy-review-7", "deploy", "review-7"),
    ]

    # The review URL answers with the feature's change, from the artifact built of the merge result.
    answer = health(url)
    assert (answer["feature"], answer["commit"]) == ("review-me", merge)
    root = project.root / ".slipway/targets/review-7"
    assert (root / "current/app/trunk_only.txt").is_file()  # the trunk's later commit is in it too
    [deployment] = project.json("deployments", "review-7")
    assert (deployment["run_id"], deployment["artifact_digest"]) == (up["id"], up["artifact_digest"])
    app = open_app(cwd=project.root, environ=project.env)
    try:
        artifact = app.store.get_artifact(up["artifact_digest"])
        assert artifact is not None and artifact.commit == merge  # built once, of the merge result
    finally:
        app.close()

    # The trunk environments got nothing; status and review list show the review environment.
    status = project.json("status")
    assert {e["name"]: e["release"] for e in status["environments"]} == {"dev": None, "staging": None, "production": None}
    [shown] = status["reviews"]
    assert (shown["name"], shown["url"], shown["commit"], shown["run_id"]) == ("review-7", url, merge, up["id"])
    [listed] = project.json("review", "list")
    assert (listed["number"], listed["state"], listed["head_commit"], listed["merge_commit"]) == (7, "open", head, merge)

    down = project.slipway("review", "down", "7", "--reason", "merged")
    assert "review-7 is closed (merged)" in down.stdout + down.stderr
    assert refuses(port)  # the teardown command stopped the app
    assert not root.exists()
    assert not (root / "shared/data/app.db").exists()
    [closed] = project.json("review", "list")
    assert (closed["state"], closed["close_reason"], closed["closed_by"]) == ("closed", "merged", "tester")
    assert any(r["id"] == up["id"] and r["kind"] == "merge-request" for r in project.json("history"))
    assert project.json("deployments", "review-7")[0]["id"] == deployment["id"]  # records are kept
    app = open_app(cwd=project.root, environ=project.env)
    try:
        [entry] = [a for a in app.store.audit_log(limit=500) if a.action == "review.closed"]
        assert (entry.actor, entry.subject, json.loads(entry.detail)["reason"]) == ("tester", "environment review-7", "merged")
    finally:
        app.close()

    again = project.slipway("review", "down", "7", "--reason", "merged")
    assert "was closed already" in again.stdout + again.stderr


def test_a_conflicting_merge_request_is_refused_with_the_paths(project: Project) -> None:
    trunk = git(project, "rev-parse", "--abbrev-ref", "HEAD")
    git(project, "checkout", "-q", "-b", "conflict")
    project.edit("app/store.py", "oldest first", "oldest first (feature)")
    head = project.commit("feature edits store.py")
    git(project, "checkout", "-q", trunk)
    project.edit("app/store.py", "oldest first", "oldest first (trunk)")
    project.commit("trunk edits store.py too")

    out = project.slipway("review", "up", "3", "--head", head, "--target", trunk, check=False)
    assert out.returncode == 1, out.stderr
    assert "conflicts in app/store.py" in out.stderr and "rebase" in out.stderr
    assert project.json("history") == []  # nothing was recorded
    assert git(project, "status", "--porcelain") == ""  # nor the working tree touched


def test_the_merge_result_is_the_same_commit_for_the_same_inputs(project: Project) -> None:
    trunk, head, _port = feature_branch(project)
    from slipway.vcs import merge_result

    first = merge_result(project.root, number=5, head=head, target=trunk)
    again = merge_result(project.root, number=5, head=head, target=trunk)
    assert first == again == git(project, "rev-parse", "refs/slipway/merge-requests/5/merge")
    assert git(project, "show", "-s", "--format=%an <%ae>|%cn <%ce>", first) == (
        "Slipway <slipway@localhost>|Slipway <slipway@localhost>"
    )
    parents = [int(git(project, "show", "-s", "--format=%ct", c)) for c in (trunk, head)]
    assert git(project, "show", "-s", "--format=%at %ct", first) == f"{max(parents)} {max(parents)}"  # not the clock's
    changed = git(project, "diff", "--name-only", trunk, first).split()
    assert changed == ["app/server.py"]  # the feature's change on top of the trunk
    assert Path(project.root / "app/server.py").read_text().count("review-me") == 0  # working tree untouched


def test_expire_tears_down_the_review_environments_not_updated_within_the_ttl(project: Project) -> None:
    trunk, head, _port = feature_branch(project)  # the example's template: ttl 72h
    clock = FakeClock(start=1_800_000_000.0)
    app = open_app(cwd=project.root, environ=project.env)
    app.clock = clock
    try:
        review.open_or_update(app, number=1, head=head, target=trunk, branch="feature")
        clock.advance(10 * 3600)
        review.open_or_update(app, number=2, head=head, target=trunk, branch="feature")
        clock.advance(60 * 3600)
        review.open_or_update(app, number=1, head=head, target=trunk, branch="feature")  # an update: 72h again

        clock.advance(12 * 3600)  # request 2 was updated exactly 72 h ago: not yet
        assert asyncio.run(review.expire(app)) == []
        clock.advance(1)
        [gone] = asyncio.run(review.expire(app))
        assert gone.environment == "review-2" and gone.complete
        states = {r.number: (r.state, r.close_reason) for r in app.store.reviews("webapp")}
        assert states[1] == ("open", None)
        assert states[2][0] == "closed" and (states[2][1] or "").startswith("expired: not updated for 72.0 h")
        assert asyncio.run(review.expire(app)) == []  # closed ones are not closed again

        clock.advance(60 * 3600 + 1)  # request 1: 72 h and a second since its update
        assert [t.environment for t in asyncio.run(review.expire(app))] == ["review-1"]
        assert [r.state for r in app.store.reviews("webapp")] == ["closed", "closed"]
        assert len(app.store.list_runs(project="webapp")) == 3  # every run is kept
    finally:
        app.close()
