"""Issue 11, items 6-8 through the CLI: environments only move forward, secrets are checked before anything
runs, and a run follows the slipway.yml it says it follows."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Project

pytestmark = pytest.mark.timeout(600)


def new_release(project: Project, label: str) -> str:
    project.edit("app/store.py", "oldest first", f"oldest first ({label})")
    return project.commit(f"webapp: {label}")


def audit(project: Project, action: str) -> list[str]:
    with sqlite3.connect(project.root / ".slipway/state.db") as db:
        return [row[0] for row in db.execute("SELECT detail FROM audit_log WHERE action = ?", (action,))]


def test_a_newer_run_at_the_same_gate_supersedes_the_waiting_one(project: Project) -> None:
    v3 = new_release(project, "v3")
    stale = project.json("run")
    v4 = new_release(project, "v4")
    fresh = project.json("run")
    assert (stale["state"], fresh["state"]) == ("waiting", "waiting")
    runs = {r["id"]: r for r in project.json("history")}
    assert runs[stale["id"]]["state"] == "superseded"
    assert f"superseded by run {fresh['id']}" in runs[stale["id"]]["error"]
    assert "approve-production" in runs[stale["id"]]["error"]
    assert {s["name"]: s["state"] for s in runs[stale["id"]]["stages"]}["approve-production"] == "superseded"
    assert project.status()["production"]["commit"] is None

    project.slipway("approve", str(fresh["id"]), "--reason", "v4 is good")
    assert project.status()["production"]["commit"] == v4
    refused = project.slipway("approve", str(stale["id"]), "--reason", "v3 was approved in the meeting", check=False)
    assert refused.returncode == 9, refused.stderr
    assert f"superseded by run {fresh['id']}" in refused.stderr and "Traceback" not in refused.stderr
    assert project.status()["production"]["commit"] == v4 != v3
    assert [a for r in project.json("history") if r["id"] == stale["id"] for a in r["approvals"]] == []


def test_an_older_artifact_needs_allow_older_with_a_reason_and_rollback_stays_the_way_back(project: Project) -> None:
    v1 = project.json("run")  # dev and staging run the first commit
    v2_commit = new_release(project, "v2")
    v2 = project.json("run")
    assert project.status()["staging"]["commit"] == v2_commit
    deployments = len(project.json("deployments", "staging"))

    refused = project.slipway("promote", v1["artifact_digest"], "--to", "staging", check=False)
    assert refused.returncode == 9 and "would move it backwards" in refused.stderr, refused.stderr
    assert f"runs commit {v2_commit[:12]}" in refused.stderr and "--allow-older" in refused.stderr
    again = project.slipway("run", "--commit", v1["commit"], check=False)
    assert again.returncode == 9 and "is an ancestor of" in again.stderr, again.stderr
    no_reason = project.slipway("promote", v1["artifact_digest"], "--to", "staging", "--allow-older", check=False)
    assert no_reason.returncode == 9 and "reason is required" in no_reason.stderr
    assert len(project.json("deployments", "staging")) == deployments
    assert len(project.json("history")) == 2  # nothing was recorded by the refused commands
    assert project.status()["staging"]["commit"] == v2_commit

    project.slipway(
        "promote", v1["artifact_digest"], "--to", "staging", "--allow-older", "--reason", "v2 corrupts uploads"
    )
    assert project.status()["staging"]["commit"] == v1["commit"]
    [latest, *_] = project.json("deployments", "staging")
    assert "--allow-older" in latest["reason"] and "v2 corrupts uploads" in latest["reason"]
    [override] = audit(project, "deployment.allow-older")
    assert "v2 corrupts uploads" in override and v2_commit in override

    project.slipway("rollback", "staging", "--reason", "back to v2")  # never refused as older
    assert project.status()["staging"]["artifact_digest"] == v2["artifact_digest"]


def add_secrets(project: Project) -> None:
    for env, secrets in {
        "staging": "{API_TOKEN: {env: STAGING_TOKEN}}",
        "production": "{API_TOKEN: {env: PROD_TOKEN}, SIGNING_KEY: {file: secrets/prod.key}}",
    }.items():
        port = f"    vars: {{port: {project.ports[env]}}}\n"
        project.edit("slipway.yml", port, f"{port}    secrets: {secrets}\n")
    project.commit("staging and production need secrets")


def test_every_missing_secret_is_listed_before_anything_is_built(project: Project) -> None:
    add_secrets(project)
    for command in (["validate"], ["run", "--dry-run"], ["run"]):
        out = project.slipway(*command, check=False, extra_env={"STAGING_TOKEN": "s3cr3t-staging"})
        assert out.returncode == 2, (command, out.stdout, out.stderr)
        assert "2 secret(s)" in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert "production: environments.production.secrets.API_TOKEN" in out.stderr and "PROD_TOKEN" in out.stderr
        assert "SIGNING_KEY" in out.stderr and "prod.key" in out.stderr
        assert "s3cr3t-staging" not in out.stdout + out.stderr
    assert not (project.root / ".slipway/targets").exists() and not (project.root / ".slipway/artifacts").exists()
    assert project.json("history") == []

    (project.root / "secrets").mkdir()
    (project.root / "secrets/prod.key").write_text("k3y\n")
    every = {"STAGING_TOKEN": "s3cr3t-staging", "PROD_TOKEN": "s3cr3t-prod"}
    waiting = project.slipway("run", "--json", extra_env=every)
    run_id = project.json("history")[0]["id"]
    assert '"waiting"' in waiting.stdout
    # Approved days later from a shell without the production token: refused, and the run still waits.
    later = project.slipway("approve", str(run_id), "--reason", "ok", check=False, extra_env={"STAGING_TOKEN": "x"})
    assert later.returncode == 2 and "PROD_TOKEN" in later.stderr and "STAGING_TOKEN" not in later.stderr
    assert project.json("history")[0]["state"] == "waiting" and project.json("history")[0]["approvals"] == []
    project.slipway("approve", str(run_id), "--reason", "ok", extra_env=every)
    assert project.json("history")[0]["state"] == "succeeded"


def test_promote_runs_the_stages_after_its_deploy(project: Project) -> None:
    waiting = project.json("run")
    project.slipway("reject", str(waiting["id"]), "--reason", "not production yet")
    promoted = project.json("promote", waiting["artifact_digest"], "--to", "staging")
    stages = [(s["name"], s["state"]) for s in promoted["stages"]]
    assert stages == [("promote-staging", "succeeded"), ("acceptance-staging", "succeeded")]
    logs = project.slipway("logs", str(promoted["id"]), "--stage", "acceptance-staging").stdout
    assert "unittest" in logs


def test_run_refuses_a_working_tree_slipway_yml_that_is_not_the_commits(project: Project) -> None:
    project.edit("slipway.yml", "-s tests/unit -t .", "-s tests/unitt -t .")  # the committed pipeline is broken
    broken = project.commit("a typo in the unit test stage")
    project.edit("slipway.yml", "-s tests/unitt -t .", "-s tests/unit -t .")  # fixed, not committed
    checked = project.slipway("validate")
    assert "(working tree) is valid" in checked.stdout
    assert f"differs from slipway.yml of commit {broken[:12]} (HEAD)" in checked.stderr

    for args in (["run"], ["run", "--dry-run"]):
        refused = project.slipway(*args, check=False)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert f"differs from slipway.yml of commit {broken[:12]}" in refused.stderr and "--allow-dirty" in refused.stderr
    assert project.json("history") == []

    fixed = project.commit("fix the unit test stage")
    assert "warning" not in project.slipway("validate").stderr
    out = project.slipway("run")
    assert f"pipeline: slipway.yml of commit {fixed[:12]}" in out.stdout
    assert project.json("history")[0]["state"] == "waiting"


def test_a_project_in_a_subdirectory_names_the_file_by_its_path_in_the_repository(
    project: Project, tmp_path: Path
) -> None:
    subprocess_env = project.env
    outer = tmp_path / "monorepo"
    shutil.copytree(project.root, outer / "services/webapp", ignore=shutil.ignore_patterns(".git", ".slipway"))
    subprocess.run(["git", "init", "-q"], cwd=outer, check=True, env=subprocess_env)
    inner = Project(root=outer / "services/webapp", env=subprocess_env, ports=project.ports)
    commit = inner.commit("webapp inside a monorepo")
    out = inner.slipway("run", "--dry-run")
    assert f"pipeline: services/webapp/slipway.yml of commit {commit[:12]}" in out.stdout
