"""Issue 14, runs nobody typed: a bare repository whose post-receive hook posts a GitHub-signed push to a real
``slipway serve``, which fetches the commit into the project's repository and runs the pipeline.

Everything is real: git, its hook (examples/git-hooks/post-receive), the server, the app on its ports.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Project
from tests.server.conftest import PATIENCE, Server, add_users, start_server, stop_server

pytestmark = pytest.mark.timeout(600)
SECRET = "a webhook secret of the test"
HOOK = REPO / "examples/git-hooks/post-receive"


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


@dataclass
class Forge:
    """The team's bare repository (with Slipway's post-receive hook), a developer's clone, and the server."""

    project: Project
    server: Server
    bare: Path
    dev: Path
    branch: str

    def push(self, message: str, *, text: str) -> tuple[str, str]:
        """Commit a change of what the app serves in the developer's clone and push it; (commit, hook output)."""
        (self.dev / "app/banner.txt").write_text(text)
        git(self.dev, "add", "-A", env=self.project.env)
        git(self.dev, "commit", "-qm", message, env=self.project.env)
        commit = git(self.dev, "rev-parse", "HEAD")
        proc = subprocess.run(
            ["git", "push", "origin", f"HEAD:{self.branch}"], cwd=self.dev, capture_output=True, text=True,
            timeout=120, env=self.project.env, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return commit, proc.stderr

    def runs(self) -> list[dict[str, Any]]:
        with self.server.client("viewer") as c:
            return list(c.get("/api/projects/webapp/runs", params={"limit": 50}).json()["items"])

    def run_of(self, commit: str) -> dict[str, Any]:
        deadline = time.monotonic() + PATIENCE
        while True:
            found = [r for r in self.runs() if r["commit"] == commit]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no run for {commit[:12]}; log:\n{self.server.log.read_text()}"
            time.sleep(0.1)


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_push(url: str, body: bytes, *, signature: str | None, delivery: str) -> httpx.Response:
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return httpx.post(f"{url}/api/hooks/webapp/github", content=body, headers=headers, timeout=60)


@contextlib.contextmanager
def serving_forge(project: Project, tmp_path: Path, extra: str = "") -> Iterator[Forge]:
    """The project served with webhooks on (and ``extra`` lines of ``triggers:``), its bare remote with
    Slipway's post-receive hook, and a developer's clone."""
    branch = git(project.root, "symbolic-ref", "--short", "HEAD")
    config = project.root / "slipway.yml"
    config.write_text(
        config.read_text()
        + f"\ntriggers:\n  branch: {branch}\n  remote: origin\n  webhook_secret: {{env: SLIPWAY_WEBHOOK_SECRET}}\n"
        + extra
    )
    (project.root / "app/banner.txt").write_text("first\n")
    project.commit("webapp: triggers")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(project.root), str(bare))
    git(project.root, "remote", "add", "origin", str(bare))
    project.env["SLIPWAY_WEBHOOK_SECRET"] = SECRET
    srv = start_server(project, add_users(project, only=("admin", "viewer")))
    try:
        shutil.copy(HOOK, bare / "hooks/post-receive")
        secret_file = tmp_path / "webhook-secret"
        secret_file.write_text(SECRET + "\n")
        git(bare, "config", "slipway.url", f"{srv.url}/api/hooks/webapp/github")
        git(bare, "config", "slipway.secretfile", str(secret_file))
        dev = tmp_path / "dev"
        git(tmp_path, "clone", "-q", str(bare), str(dev))
        yield Forge(project, srv, bare, dev, branch)
    finally:
        stop_server(srv)


@pytest.fixture
def forge(project: Project, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Forge]:
    """:func:`serving_forge`, with the keys of ``triggers:`` a test parametrizes it with."""
    extra = "".join(f"  {k}: {v}\n" for k, v in getattr(request, "param", {}).items())
    with serving_forge(project, tmp_path, extra) as served:
        yield served


def staging_commit(forge: Forge) -> str | None:
    with forge.server.client("viewer") as c:
        envs = {e["name"]: e for e in c.get("/api/projects/webapp/status").json()["environments"]}
    return envs["staging"]["commit"]


def test_a_push_runs_the_pipeline_to_the_approval_gate_with_nobody_involved(forge: Forge) -> None:
    commit, hook_output = forge.push("banner: second", text="second\n")
    assert "run" in hook_output, hook_output  # the hook prints what the server answered
    run = forge.run_of(commit)
    assert run["triggered_by"].startswith("github push")
    waiting = forge.server.wait_run("viewer", run["id"], "waiting", "failed")
    assert waiting["state"] == "waiting", waiting
    assert staging_commit(forge) == commit
    # the commit came through the mirror: the server's checkout did not move
    assert git(forge.project.root, "rev-parse", "HEAD") != commit
    assert git(forge.project.root, "rev-parse", f"refs/slipway/heads/{forge.branch}") == commit


def test_two_quick_pushes_leave_the_first_superseded_and_the_second_deployed(forge: Forge) -> None:
    first, _ = forge.push("banner: one", text="one\n")
    second, _ = forge.push("banner: two", text="two\n")
    run2 = forge.server.wait_run("viewer", forge.run_of(second)["id"], "waiting", "failed")
    assert run2["state"] == "waiting", (run2["error"], run2)
    run1 = forge.server.wait_run("viewer", forge.run_of(first)["id"], "superseded", "failed", "succeeded")
    assert run1["state"] == "superseded", run1
    assert staging_commit(forge) == second


def test_a_tampered_or_missing_signature_is_refused_and_recorded_and_nothing_runs(forge: Forge) -> None:
    head = git(forge.project.root, "rev-parse", "HEAD")
    body = json.dumps({"ref": f"refs/heads/{forge.branch}", "after": head, "pusher": {"name": "mallory"}}).encode()
    tampered = body.replace(b"mallory", b"mallorz")
    for signature in (signed(body), None, signed(body, "another secret"), "sha256=" + "0" * 64):
        answer = post_push(forge.server.url, tampered, signature=signature, delivery=str(uuid.uuid4()))
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["type"] == "NotAuthenticated"
    assert forge.runs() == []
    with forge.server.client("admin") as c:
        audit = c.get("/api/projects/webapp/audit", params={"limit": 20}).json()["items"]
    refused = [a for a in audit if a["action"] == "webhook.refused"]
    assert len(refused) == 4
    assert "does not match" in json.loads(refused[0]["detail"])["why"]


def test_a_replayed_delivery_starts_nothing(forge: Forge) -> None:
    head = git(forge.project.root, "rev-parse", "HEAD")
    body = json.dumps({"ref": f"refs/heads/{forge.branch}", "after": head, "pusher": {"name": "ci"}}).encode()
    delivery = str(uuid.uuid4())
    first = post_push(forge.server.url, body, signature=signed(body), delivery=delivery)
    assert first.status_code == 202, first.text
    forge.server.wait_run("viewer", first.json()["run"]["id"], "waiting", "failed")
    again = post_push(forge.server.url, body, signature=signed(body), delivery=delivery)
    assert again.status_code == 200 and again.json()["outcome"] == "replayed", again.text
    # a new delivery of a commit that already ran starts nothing either: each trunk commit runs once
    other = post_push(forge.server.url, body, signature=signed(body), delivery=str(uuid.uuid4()))
    assert other.status_code == 200 and other.json()["outcome"] == "ignored", other.text
    assert len(forge.runs()) == 1
    with forge.server.client("viewer") as c:
        seen = c.get("/api/projects/webapp/deliveries").json()
    assert [d["outcome"] for d in seen] == ["ignored", "started"] and seen[1]["delivery"] == delivery


def test_an_unknown_project_is_404_and_a_push_to_another_branch_is_ignored(forge: Forge) -> None:
    body = json.dumps({"ref": "refs/heads/feature", "after": "1" * 40}).encode()
    unknown = httpx.post(
        f"{forge.server.url}/api/hooks/nosuch/github", content=body,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signed(body)}, timeout=60,
    )
    assert unknown.status_code == 404, unknown.text
    other = post_push(forge.server.url, body, signature=signed(body), delivery=str(uuid.uuid4()))
    assert other.status_code == 200 and other.json()["outcome"] == "ignored", other.text
    assert "feature" in other.json()["message"]
    assert forge.runs() == []


@pytest.mark.parametrize("forge", [{"poll_interval": 1}], indirect=True)
def test_the_server_polls_the_remote_when_no_webhook_comes(forge: Forge) -> None:
    (forge.bare / "hooks/post-receive").unlink()  # no webhook: only the poller can see the push
    commit, _ = forge.push("banner: polled", text="polled\n")
    run = forge.run_of(commit)  # the first poll also runs the head the checkout was at: it never ran
    assert run["triggered_by"] == "poll"
    assert forge.server.wait_run("viewer", run["id"], "waiting", "failed")["state"] == "waiting"
    time.sleep(3)  # three more polls of the same head start nothing
    assert len([r for r in forge.runs() if r["commit"] == commit]) == 1


def test_deliveries_that_arrive_together_each_start_their_run(forge: Forge) -> None:
    """A forge sends deliveries concurrently: their fetches into the one repository must not fail each other
    (git locks the refs it updates); each is handled, and queues and superseding sort out the runs."""
    (forge.bare / "hooks/post-receive").unlink()  # the test sends the deliveries itself, all at once
    commits = [forge.push(f"banner: {i}", text=f"{i}\n")[0] for i in range(4)]
    bodies = [json.dumps({"ref": f"refs/heads/{forge.branch}", "after": c, "pusher": {"name": "ci"}}).encode()
              for c in commits]  # fmt: skip
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(
            lambda b: post_push(forge.server.url, b, signature=signed(b), delivery=str(uuid.uuid4())), bodies))
    assert [a.status_code for a in answers] == [202] * len(bodies), [a.text for a in answers]
    with forge.server.client("viewer") as c:
        outcomes = [d["outcome"] for d in c.get("/api/projects/webapp/deliveries").json()]
    assert outcomes == ["started"] * len(bodies), outcomes
    newest = forge.server.wait_run("viewer", forge.run_of(commits[-1])["id"], "waiting", "failed")
    assert newest["state"] == "waiting", newest["error"]
