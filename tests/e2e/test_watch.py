"""Issue 14, polling for teams without webhooks: ``slipway watch`` follows the remote's trunk with
``git ls-remote`` and runs each new commit once; the fetch can use a deploy key over a real OpenSSH server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Project
from tests.support.pytest_ssh import BedFactory, ssh_bed_installed, ssh_testbed  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(400)


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def with_triggers(project: Project, bare: Path, remote_url: str, extra: str = "") -> tuple[str, Path]:
    """Add ``triggers:`` to the project, commit, make ``bare`` its remote; (trunk name, a developer's clone)."""
    branch = git(project.root, "symbolic-ref", "--short", "HEAD")
    config = project.root / "slipway.yml"
    config.write_text(config.read_text() + f"\ntriggers:\n  branch: {branch}\n  remote: {remote_url}\n{extra}")
    project.commit("webapp: triggers")
    git(bare.parent, "clone", "-q", "--bare", str(project.root), str(bare))
    dev = bare.parent / "dev"
    git(bare.parent, "clone", "-q", str(bare), str(dev))
    return branch, dev


def push(project: Project, dev: Path, branch: str, text: str) -> str:
    (dev / "app/banner.txt").write_text(text)
    git(dev, "add", "-A", env=project.env)
    git(dev, "commit", "-qm", f"banner: {text.strip()}", env=project.env)
    git(dev, "push", "-q", "origin", f"HEAD:{branch}", env=project.env)
    return git(dev, "rev-parse", "HEAD")


def test_watch_runs_each_new_trunk_commit_once(project: Project, tmp_path: Path) -> None:
    bare = tmp_path / "origin.git"
    branch, dev = with_triggers(project, bare, str(bare))
    # the head the project was at has never run: it is new to the watcher, and runs
    first = project.slipway("watch", "--once")
    assert "run 1" in first.stderr + first.stdout, first.stderr
    pushed = push(project, dev, branch, "polled\n")
    second = project.slipway("watch", "--once")
    runs = project.json("history")
    newest = runs[0]
    assert newest["commit"] == pushed and newest["triggered_by"] == "poll", newest
    assert newest["state"] == "waiting", (newest["error"], second.stderr)  # driven to the approval gate
    assert project.status()["staging"]["commit"] == pushed
    again = project.slipway("watch", "--once")
    assert "nothing to run" in again.stdout, again.stdout
    assert len(project.json("history")) == 2
    # the server's checkout did not move: the commit came into refs/slipway/heads/
    assert git(project.root, "rev-parse", "HEAD") != pushed
    assert git(project.root, "rev-parse", f"refs/slipway/heads/{branch}") == pushed


def test_watch_says_clearly_when_the_remote_cannot_be_read(project: Project, tmp_path: Path) -> None:
    bare = tmp_path / "origin.git"
    with_triggers(project, bare, str(tmp_path / "nowhere.git"))
    proc = project.slipway("watch", "--once", check=False)
    assert proc.returncode != 0
    assert "git ls-remote" in proc.stderr and "nowhere.git" in proc.stderr, proc.stderr
    assert "triggers:" in proc.stderr  # the hint says where to fix it
    assert project.json("history") == []


def test_a_project_without_triggers_is_told_how_to_add_them(project: Project) -> None:
    proc = project.slipway("watch", "--once", check=False)
    assert proc.returncode != 0 and "has no 'triggers:'" in proc.stderr, proc.stderr


def test_watch_fetches_over_ssh_with_a_deploy_key_and_checks_the_host_key(
    project: Project, tmp_path: Path, ssh_testbed: BedFactory  # noqa: F811 - the fixture
) -> None:
    host = ssh_testbed(1).hosts[0]
    bare = host.host_dir / "origin.git"  # /srv/origin.git on the host
    url = f"ssh://{host.username}@{host.address}:{host.port}/srv/origin.git"
    key = tmp_path / "deploy-key"
    shutil.copy(host.client_key, key)
    extra = f"  ssh_key: {{file: {key}}}\n  known_hosts: {host.known_hosts}\n"
    branch, dev = with_triggers(project, bare, url, extra)
    pushed = push(project, dev, branch, "over ssh\n")
    proc = project.slipway("watch", "--once")
    assert project.json("history")[0]["commit"] == pushed, proc.stderr
    # a host whose key is not the one in known_hosts is refused: the fetch never trusts a new key
    host.known_hosts.write_text("")
    push(project, dev, branch, "again\n")
    refused = project.slipway("watch", "--once", check=False)
    assert refused.returncode != 0 and "Host key verification failed" in refused.stderr, refused.stderr


def test_watch_fetches_over_http_with_a_token_from_the_secret_store(project: Project, tmp_path: Path) -> None:
    """git's own smart HTTP server behind basic auth, as a forge serves HTTPS: the token in
    ``triggers.token`` gets in, sent as GitHub expects it (user x-access-token), and never appears in output."""
    from tests.support.git_http import GitHttpServer

    token = "ghs_a-token-of-the-test-123456"
    repos = tmp_path / "served"
    repos.mkdir()
    server = GitHttpServer(repos, user="x-access-token", password=token)
    try:
        extra = (
            "  token: {env: FORGE_READ_TOKEN}\n"
            "  forge: {kind: github, api_url: http://127.0.0.1:9, repository: team/webapp, token: {env: FORGE_READ_TOKEN}}\n"
        )
        branch, dev = with_triggers(project, repos / "origin.git", f"{server.url}/origin.git", extra)
        pushed = push(project, dev, branch, "over http\n")
        proc = project.slipway("watch", "--once", extra_env={"FORGE_READ_TOKEN": token})
        assert project.json("history")[0]["commit"] == pushed, proc.stderr
        assert token not in proc.stdout + proc.stderr
        wrong = project.slipway("watch", "--once", check=False, extra_env={"FORGE_READ_TOKEN": "wrong-token-000"})
        assert wrong.returncode != 0 and "git ls-remote" in wrong.stderr, wrong.stderr
        assert "wrong-token-000" not in wrong.stderr and server.refused >= 1
    finally:
        server.close()
