"""Issue 13, the CLI without a server: who acts is the login at this host plus git's identity; approvers
may name a git email; ``identity: {require: true}`` refuses ``--as`` and SLIPWAY_USER, and a missing
``user.email``, before anything is recorded."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from slipway.errors import GateError
from slipway.model.states import State
from slipway.services import pipeline
from slipway.services.app import open_app
from tests.e2e.conftest import GIT_ENV, Project

pytestmark = pytest.mark.timeout(300)

CONFIG = """\
version: 1
name: ident
artifact:
  paths: [app]
environments:
  prod:
    targets:
      - {kind: local, name: prod-1, path: .slipway/targets/prod}
pipeline:
  - {name: build, kind: build}
  - {name: approve-prod, kind: approval, approvers: [alice@example.com]}
  - {name: deploy-prod, kind: deploy, environment: prod}
"""
POLICY = "identity: {require: true}\n"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A small project in its own git repository; git's global and system config are left out of it."""
    root, home = tmp_path / "ident", tmp_path / "home"
    (root / "app").mkdir(parents=True)
    home.mkdir()
    (root / "app/version.txt").write_text("1\n")
    (root / "slipway.yml").write_text(CONFIG)
    env = {**os.environ, **GIT_ENV, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    for name in ("SLIPWAY_USER", "SLIPWAY_DATABASE_URL", "SLIPWAY_ARTIFACT_DIR", "GIT_CONFIG_GLOBAL"):
        env.pop(name, None)
    proj = Project(root=root, env=env)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    proj.commit("ident: first release")
    return proj


def login() -> str:
    return f"{getpass.getuser()}@{os.uname().nodename}"


def git_config(project: Project, key: str, value: str) -> None:
    subprocess.run(["git", "config", key, value], cwd=project.root, check=True, env=project.env, timeout=30)


def watch_git(project: Project) -> Path:
    """Put a ``git`` first on the project's PATH that logs its arguments, then runs the real git."""
    real, bindir = shutil.which("git"), project.root.parent / "bin"
    bindir.mkdir()
    log = project.root.parent / "git.log"
    log.write_text("")
    (bindir / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (bindir / "git").chmod(0o755)
    project.env["PATH"] = f"{bindir}:{project.env['PATH']}"
    return log


def require_identity(project: Project) -> None:
    (project.root / "slipway.yml").write_text(CONFIG + POLICY)
    project.commit("ident: require identity")


def audit_actors(project: Project, action: str) -> list[str]:
    with sqlite3.connect(project.root / ".slipway/state.db") as db:
        return [row[0] for row in db.execute("SELECT actor FROM audit_log WHERE action = ?", (action,))]


def approvals(project: Project, run_id: int) -> list[dict[str, str]]:
    [run] = [r for r in project.json("history") if r["id"] == run_id]
    return list(run["approvals"])


def test_the_login_and_git_identity_are_recorded_an_approver_may_be_a_git_email_and_as_still_works(project: Project) -> None:
    git_config(project, "user.name", "Bob Roe")
    git_config(project, "user.email", "bob@example.com")
    run = project.json("run")
    assert run["state"] == "waiting"
    assert run["triggered_by"] == f"{login()} (git: Bob Roe <bob@example.com>)"

    refused = project.slipway("approve", str(run["id"]), "--reason", "looks fine", check=False)
    assert refused.returncode == 9, refused.stderr
    assert "may not approve approve-prod; approvers: alice@example.com" in refused.stderr
    assert "git user.email" in refused.stderr and "Traceback" not in refused.stderr
    assert approvals(project, run["id"]) == []

    git_config(project, "user.name", "Alice Doe")
    git_config(project, "user.email", "Alice@Example.com")  # an email matches whatever its case
    project.slipway("approve", str(run["id"]), "--reason", "reviewed the diff")
    alice = f"{login()} (git: Alice Doe <Alice@Example.com>)"
    [approval] = approvals(project, run["id"])
    assert (approval["by"], approval["decision"]) == (alice, "approved")
    assert project.status()["prod"]["commit"] == run["commit"]
    assert [d["deployed_by"] for d in project.json("deployments", "prod")] == [alice]
    assert audit_actors(project, "approval.approved") == [alice]

    # Without identity.require, --as and SLIPWAY_USER still name who acts, as they always did.
    (project.root / "app/version.txt").write_text("2\n")
    second = json.loads(project.slipway("--as", "ci-bot", "run", "--json", "--commit", project.commit("2")).stdout)
    assert second["triggered_by"] == "ci-bot"
    project.slipway("approve", str(second["id"]), "--reason", "ok", extra_env={"SLIPWAY_USER": "alice@example.com"})
    assert [a["by"] for a in approvals(project, second["id"])] == ["alice@example.com"]


def test_identity_require_refuses_as_and_slipway_user_and_records_nothing(project: Project) -> None:
    git_config(project, "user.name", "Alice Doe")
    git_config(project, "user.email", "alice@example.com")
    require_identity(project)
    run = project.json("run")
    assert run["state"] == "waiting" and run["triggered_by"] == f"{login()} (git: Alice Doe <alice@example.com>)"

    for args, extra in ((["--as", "alice@example.com"], {}), ([], {"SLIPWAY_USER": "alice@example.com"})):
        refused = project.slipway(*args, "approve", str(run["id"]), "--reason", "on her behalf", check=False,
                                  extra_env=extra)
        assert refused.returncode == 9, refused.stderr
        said = "--as alice@example.com" if args else "SLIPWAY_USER=alice@example.com"
        assert f"{said} is refused" in refused.stderr and "identity.require" in refused.stderr, refused.stderr
        assert str(project.root / "slipway.yml") in refused.stderr and "unset SLIPWAY_USER" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert approvals(project, run["id"]) == []
        assert project.json("history")[0]["state"] == "waiting"
    again = project.slipway("--as", "bob", "run", check=False)
    assert again.returncode == 9 and "--as bob is refused" in again.stderr, again.stderr
    assert len(project.json("history")) == 1  # no run was created for it
    # A command that records nothing still answers: the policy is about what is recorded.
    assert project.slipway("--as", "bob", "status").returncode == 0

    project.slipway("approve", str(run["id"]), "--reason", "reviewed the diff")
    [approval] = approvals(project, run["id"])
    assert approval["by"] == f"{login()} (git: Alice Doe <alice@example.com>)"
    assert project.status()["prod"]["commit"] == run["commit"]


def test_identity_require_without_a_git_email_refuses_what_records_and_says_how_to_set_it(project: Project) -> None:
    require_identity(project)
    refused = project.slipway("run", check=False)
    assert refused.returncode == 9, refused.stderr
    assert "git has no user.email configured" in refused.stderr and "identity.require" in refused.stderr
    assert "git config user.email" in refused.stderr and "Traceback" not in refused.stderr
    assert project.json("history") == []

    log = watch_git(project)
    assert project.slipway("status").returncode == 0  # records nothing: not refused, and git is not even asked
    assert "user" not in log.read_text()
    git_config(project, "user.email", "alice@example.com")
    log.write_text("")
    run = project.json("run")
    assert run["triggered_by"] == f"{login()} (git: <alice@example.com>)"
    assert [line for line in log.read_text().splitlines() if "user" in line] == [
        f"-C {project.root} config --get-regexp ^user\\.(name|email)$"  # asked once for the whole run
    ]
    assert audit_actors(project, "run.create.pipeline") == [run["triggered_by"]]


def test_identity_require_records_rejections_and_rollbacks_as_the_git_identity(project: Project) -> None:
    git_config(project, "user.name", "Alice Doe")
    git_config(project, "user.email", "alice@example.com")
    require_identity(project)
    alice = f"{login()} (git: Alice Doe <alice@example.com>)"
    rejected = project.json("run")
    refused = project.slipway("--as", "bob", "reject", str(rejected["id"]), "--reason", "no", check=False)
    assert refused.returncode == 9 and "--as bob is refused" in refused.stderr, refused.stderr
    assert approvals(project, rejected["id"]) == []
    project.slipway("reject", str(rejected["id"]), "--reason", "not this week")
    assert [(a["by"], a["decision"]) for a in approvals(project, rejected["id"])] == [(alice, "rejected")]

    for label in ("2", "3"):
        (project.root / "app/version.txt").write_text(f"{label}\n")
        run = project.json("run", "--commit", project.commit(f"ident: release {label}"))
        project.slipway("approve", str(run["id"]), "--reason", f"release {label}")
    deployments = len(project.json("deployments", "prod"))
    refused = project.slipway("--as", "bob", "rollback", "prod", "--reason", "3 is broken", check=False)
    assert refused.returncode == 9 and "--as bob is refused" in refused.stderr, refused.stderr
    assert len(project.json("deployments", "prod")) == deployments
    project.slipway("rollback", "prod", "--reason", "3 is broken")
    [latest, *_] = project.json("deployments", "prod")
    assert (latest["kind"], latest["deployed_by"]) == ("rollback", alice)


def test_a_user_a_server_authenticated_is_recorded_as_given_under_the_policy(project: Project) -> None:
    """What ``slipway serve`` does: one App per project, then per request ``acting_as`` the signed-in user
    (or ``open_app(actor=...)``); neither the policy nor a SLIPWAY_USER in the server's environment refuses or
    replaces that user, and it needs no git identity."""
    require_identity(project)
    git_config(project, "user.email", "alice@example.com")
    run = project.json("run")
    environ = {**project.env, "SLIPWAY_USER": "mallory"}
    subprocess.run(["git", "config", "--unset", "user.email"], cwd=project.root, check=True, env=project.env)
    direct = open_app(cwd=project.root, environ=environ, actor="carol")
    assert direct.settings.actor == "carol" and direct.settings.identity.answers_to(["carol"])
    base = open_app(cwd=project.root, environ=environ)
    try:
        with pytest.raises(GateError, match="SLIPWAY_USER=mallory is refused"):
            _ = base.settings.actor
        app = base.acting_as("alice@example.com")
        outcome = asyncio.run(asyncio.wait_for(pipeline.approve(app, run["id"], reason="from the web"), 120))
    finally:
        base.close()
    assert outcome.state is State.SUCCEEDED
    assert [a["by"] for a in approvals(project, run["id"])] == ["alice@example.com"]
    assert audit_actors(project, "approval.approved") == ["alice@example.com"]
