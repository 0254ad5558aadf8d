"""The example pipeline end to end through the CLI, and every way it must refuse bad input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.e2e.conftest import SLIPWAY, Project


def health(port: int) -> dict[str, str]:
    """The app's /health. No waiting: a host reverted after a failed deployment is restarted by its
    activate hooks, and the example's restart returns only once the app serves (examples/webapp/bin)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
        return json.loads(resp.read())


def run_to_production(project: Project) -> int:
    waiting = project.json("run")
    assert waiting["state"] == "waiting", waiting
    project.slipway("approve", str(waiting["id"]), "--reason", "acceptance passed on staging")
    return int(waiting["id"])


def test_one_artifact_travels_to_production_then_rollback(project: Project) -> None:
    first = run_to_production(project)
    status = project.status()
    digests = {env["artifact_digest"] for env in status.values()}
    assert len(digests) == 1 and None not in digests  # dev, staging and production run the same artifact
    assert {env["run_id"] for env in status.values()} == {first}
    release_one = status["production"]["release"]
    assert status["production"]["hosts"] == [
        {"name": "production-1", "release": release_one, "artifact_digest": status["production"]["artifact_digest"]}
    ]
    commit_one = status["production"]["commit"]
    assert health(project.ports["production"])["commit"] == commit_one

    # Who approved, and why, is kept with the run.
    [run] = [r for r in project.json("history") if r["id"] == first]
    assert run["approvals"] == [
        {
            "stage": "approve-production",
            "decision": "approved",
            "by": "tester",
            "reason": "acceptance passed on staging",
            "at": run["approvals"][0]["at"],
        }
    ]
    assert all(s["state"] == "succeeded" and s["duration"] is not None for s in run["stages"])

    project.edit("app/store.py", "oldest first", "oldest first (v2)")
    commit_two = project.commit("webapp: second release")
    waiting = project.json("run")
    digest_two = waiting["artifact_digest"]
    assert digest_two != status["production"]["artifact_digest"]
    project.slipway("approve", str(waiting["id"]), "--reason", "v2")
    assert project.status()["production"]["commit"] == commit_two
    assert health(project.ports["production"])["commit"] == commit_two

    project.slipway("rollback", "production", "--reason", "v2 misbehaves")
    after = project.status()["production"]
    assert after["release"] == release_one and after["commit"] == commit_one
    assert health(project.ports["production"])["commit"] == commit_one
    assert os.readlink(project.root / ".slipway/targets/production/current") == f"releases/{release_one}"
    [latest, *_] = project.json("deployments", "production")
    assert (latest["kind"], latest["state"], latest["release"], latest["reason"]) == (
        "rollback",
        "succeeded",
        release_one,
        "v2 misbehaves",
    )


def test_promote_needs_every_earlier_stage_and_never_rebuilds(project: Project) -> None:
    waiting = project.json("run")
    digest = waiting["artifact_digest"]
    refused = project.slipway("promote", digest, "--to", "production", check=False)
    assert refused.returncode == 9
    assert "approve-production" in refused.stderr and "has not passed" in refused.stderr
    project.slipway("reject", str(waiting["id"]), "--reason", "not today")
    assert project.json("history")[0]["state"] == "failed"
    # Staging's earlier stages (build, tests, dev, acceptance) passed: promoting there is allowed.
    promoted = project.json("promote", digest, "--to", "staging")
    assert promoted["kind"] == "promote" and promoted["artifact_digest"] == digest
    assert project.status()["staging"]["artifact_digest"] == digest
    artifacts = list((project.root / ".slipway/artifacts/sha256").glob("*.tar.gz"))
    assert len(artifacts) == 1  # built once


def test_same_commit_is_built_once(project: Project) -> None:
    first = project.json("run")
    second = project.json("run")
    assert first["artifact_digest"] == second["artifact_digest"]
    assert len(list((project.root / ".slipway/artifacts/sha256").glob("*.tar.gz"))) == 1


def test_approving_a_run_that_is_not_waiting_is_refused(project: Project) -> None:
    run_id = run_to_production(project)
    again = project.slipway("approve", str(run_id), "--reason", "twice", check=False)
    assert again.returncode == 9 and "not waiting for approval" in again.stderr
    missing = project.slipway("approve", "999", "--reason", "x", check=False)
    assert missing.returncode == 9 and "there is no run 999" in missing.stderr


def test_only_listed_approvers_may_approve(project: Project) -> None:
    project.edit(
        "slipway.yml",
        "{name: approve-production, kind: approval}",
        "{name: approve-production, kind: approval, approvers: [alice]}",
    )
    project.commit("only alice approves")
    waiting = project.json("run")
    refused = project.slipway("approve", str(waiting["id"]), "--reason", "me", check=False)
    assert refused.returncode == 9 and "may not approve" in refused.stderr
    project.slipway("--as", "alice", "approve", str(waiting["id"]), "--reason", "ok")
    assert project.json("history")[0]["approvals"][0]["by"] == "alice"


def test_a_failing_hook_leaves_current_and_the_store_truthful(project: Project) -> None:
    run_to_production(project)
    before = project.status()["dev"]
    project.edit(
        "slipway.yml",
        "    configure:\n",
        '    configure:\n      - test -n "$NOPE" || { echo broken config >&2; exit 3; }\n',
    )
    project.commit("a broken configure hook")
    failed = project.slipway("run", check=False)
    assert failed.returncode == 6, failed.stderr
    assert "dev-1" in failed.stderr and "broken config" in failed.stderr
    after = project.status()["dev"]
    assert after["release"] == before["release"]
    assert os.readlink(project.root / ".slipway/targets/dev/current") == f"releases/{before['release']}"
    assert health(project.ports["dev"])["commit"] == before["commit"]
    [latest, *_] = project.json("deployments", "dev")
    assert latest["state"] == "failed" and latest["hosts"][0]["state"] == "failed"
    run = project.json("history")[0]
    assert run["state"] == "failed"
    assert [s["state"] for s in run["stages"]][2:4] == ["failed", "skipped"]
    logs = project.slipway("logs", str(run["id"]), "--stage", "deploy-dev").stdout
    assert "broken config" in logs


def test_a_failed_verify_reverts_to_the_previous_release(project: Project) -> None:
    run_to_production(project)
    before = project.status()["dev"]
    project.edit("app/server.py", '"status": "ok"', '"status": "degraded"')
    project.commit("a release that is unhealthy")
    failed = project.slipway("run", check=False)
    assert failed.returncode == 6
    assert "reverted" in failed.stderr
    after = project.status()["dev"]
    assert after["release"] == before["release"]
    assert health(project.ports["dev"])["status"] == "ok"


def test_missing_secret_fails_before_any_host_is_touched(project: Project) -> None:
    project.edit(
        "slipway.yml",
        f"    vars: {{port: {project.ports['dev']}}}\n",
        f"    vars: {{port: {project.ports['dev']}}}\n    secrets: {{API_TOKEN: {{env: WEBAPP_TOKEN}}}}\n",
    )
    project.commit("dev needs a secret")
    failed = project.slipway("run", check=False)
    assert failed.returncode == 2
    assert "WEBAPP_TOKEN" in failed.stderr and "is not set" in failed.stderr
    assert not (project.root / ".slipway/targets/dev").exists()


def test_secrets_reach_hooks_but_never_logs_or_the_store(project: Project) -> None:
    secret = "tok-3f9a7c1e-very-secret"
    project.edit(
        "slipway.yml",
        f"    vars: {{port: {project.ports['dev']}}}\n",
        f"    vars: {{port: {project.ports['dev']}}}\n    secrets: {{API_TOKEN: {{env: WEBAPP_TOKEN}}}}\n",
    )
    project.edit("slipway.yml", "    configure:\n", '    configure:\n      - echo "token is $API_TOKEN"\n')
    project.commit("dev uses a secret")
    out = project.slipway("run", extra_env={"WEBAPP_TOKEN": secret})
    assert "token is ***" in out.stdout and secret not in out.stdout + out.stderr
    logs = project.slipway("logs", "1").stdout
    assert "token is ***" in logs and secret not in logs
    db = (project.root / ".slipway/state.db").read_bytes()
    for wal in (project.root / ".slipway").glob("state.db-*"):
        db += wal.read_bytes()
    assert secret.encode() not in db


def test_tampered_artifact_is_refused_and_nothing_is_deployed(project: Project) -> None:
    waiting = project.json("run")
    project.slipway("reject", str(waiting["id"]), "--reason", "test")
    [archive] = (project.root / ".slipway/artifacts/sha256").glob("*.tar.gz")
    archive.chmod(0o644)
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    staging_before = project.status()["staging"]
    refused = project.slipway("promote", waiting["artifact_digest"], "--to", "staging", check=False)
    assert refused.returncode == 4 and "tampered" in refused.stderr
    assert project.status()["staging"] == staging_before


def test_unknown_digest_and_environment_are_clear_errors(project: Project) -> None:
    unknown = project.slipway("promote", "sha256:" + "ab" * 32, "--to", "staging", check=False)
    assert unknown.returncode == 9 and "never built" in unknown.stderr
    bad_env = project.slipway("rollback", "prod", check=False)
    assert bad_env.returncode == 2 and "'prod' is not defined" in bad_env.stderr and "production" in bad_env.stderr
    nothing = project.slipway("rollback", "production", check=False)
    assert nothing.returncode == 9 and "nothing was ever deployed" in nothing.stderr


def test_malformed_config_gives_position_and_exit_2(project: Project) -> None:
    (project.root / "slipway.yml").write_text("name: webapp\nartifact:\n  paths: [app\n")
    out = project.slipway("validate", check=False)
    assert out.returncode == 2
    assert "slipway.yml:" in out.stderr and "malformed YAML" in out.stderr and "Traceback" not in out.stderr
    (project.root / "slipway.yml").write_text("name: webapp\nartifact: {paths: [app]}\nenvironmets: {}\n")
    out = project.slipway("validate", check=False)
    assert out.returncode == 2 and "did you mean 'environments'" in out.stderr


def test_a_run_reads_its_pipeline_from_the_commit_not_the_working_tree(project: Project) -> None:
    # An uncommitted edit does not change the pipeline a run follows (with --allow-dirty; without, it is refused) ...
    project.edit("slipway.yml", "{name: unit-tests, kind: test,", "{name: unit-tests-edited, kind: test,")
    waiting = project.json("run", "--allow-dirty")
    assert [s["name"] for s in project.json("history")[0]["stages"]][:2] == ["build", "unit-tests"], waiting
    # ... and a commit without slipway.yml cannot run, with a clear error and nothing started.
    subprocess.run(["git", "rm", "-q", "--cached", "slipway.yml"], cwd=project.root, check=True, env=project.env)
    subprocess.run(["git", "commit", "-qm", "no pipeline"], cwd=project.root, check=True, env=project.env)
    out = project.slipway("run", check=False)
    assert out.returncode == 2 and "has no slipway.yml" in out.stderr and "commit slipway.yml" in out.stderr
    assert len(project.json("history")) == 1


def test_validate_catches_undefined_template_variables(project: Project) -> None:
    project.edit("slipway.yml", "{{ vars.port }} {{ paths.shared }}", "{{ vars.prot }} {{ paths.shared }}")
    out = project.slipway("validate", check=False)
    assert out.returncode == 2 and "prot" in out.stderr and "activate" in out.stderr


def test_dry_run_prints_the_plan_and_does_nothing(project: Project) -> None:
    out = project.slipway("run", "--dry-run").stdout
    assert "deploy-production" in out and "switch-current" in out and "restart.sh" in out
    assert not (project.root / ".slipway").exists()


def test_ctrl_c_cancels_cleanly_and_is_recorded(project: Project) -> None:
    # The stage outlasts any machine's delay: Ctrl-C ends it, not its own end (it would then be recorded
    # as succeeded, and the deployment that follows would be what is cancelled).
    project.edit("slipway.yml", 'run: "python3 -m unittest discover -s tests/unit -t ."', 'run: "sleep 600"')
    project.commit("a slow test stage")
    proc = subprocess.Popen(
        [SLIPWAY, "run"], cwd=project.root, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 200  # the test's timeout is 300 s; one CLI start took 49 s when loaded
        while "unit-tests" not in _running_stages(project.root / ".slipway/state.db"):
            assert proc.poll() is None and time.monotonic() < deadline, "the unit-tests stage never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    run = project.json("history")[0]
    assert run["state"] == "cancelled"
    assert {s["name"]: s["state"] for s in run["stages"]}["unit-tests"] == "cancelled"


def _running_stages(state_db: Path) -> list[str]:
    """The stages the store records as running: read directly, since a CLI call per poll takes seconds on
    a busy machine, long enough to miss the moment."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=5)) as db:
            return [name for (name,) in db.execute("SELECT name FROM stages WHERE state = 'running'")]
    except sqlite3.OperationalError:  # not created yet, or its schema not yet
        return []


def test_init_writes_a_valid_commented_config(tmp_path: Path) -> None:
    """Issue 15 changed what init writes: a config for the project it finds (tests/init run it to the gate);
    in an empty directory, a generic one that validates, with no secret to set first."""
    subprocess.run([SLIPWAY, "init", str(tmp_path)], check=True, capture_output=True)
    text = (tmp_path / "slipway.yml").read_text()
    assert text.count("#") > 10
    validate = [SLIPWAY, "--config", str(tmp_path / "slipway.yml"), "validate"]
    out = subprocess.run(validate, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    again = subprocess.run([SLIPWAY, "init", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr
    forced = subprocess.run([SLIPWAY, "init", "--force", str(tmp_path)], capture_output=True, text=True)
    assert forced.returncode == 0 and (tmp_path / ".gitignore").read_text() == ".slipway/\n", forced.stderr


def test_build_commands_are_templated_and_validated(project: Project) -> None:
    """Issue 15: the starter promised templated build commands and they were not: now they are, like
    stage commands, and a typo in one is caught by validate, at its line."""
    project.edit("slipway.yml", "    - python3 -m compileall -q app\n",
                 '    - python3 -m compileall -q app\n    - echo "{{ commit }} of {{ project }}" > app/BUILT\n')
    commit = project.commit("stamp the build")
    run = project.json("run")
    built = (project.root / ".slipway/targets/dev/current/app/BUILT").read_text()
    assert built == f"{commit} of webapp\n", (built, run["state"])
    project.edit("slipway.yml", "{{ commit }} of", "{{ comit }} of")
    bad = project.slipway("validate", check=False)
    assert bad.returncode == 2 and "artifact.build[1]" in bad.stderr and "comit" in bad.stderr, bad.stderr


def test_test_stages_run_against_the_artifact_also_when_the_build_is_reused(project: Project) -> None:
    """Issue 15: tests ran in a fresh export of the commit; when a commit's earlier build was reused, what
    the build made was not there ('.venv/bin/python: not found'). Tests now run with the artifact unpacked."""
    project.edit("slipway.yml", "    - python3 -m compileall -q app\n",
                 "    - python3 -m compileall -q app\n    - echo built > app/generated.txt\n")
    project.edit("slipway.yml", 'run: "python3 -m unittest discover -s tests/unit -t ."}',
                 'run: ["test \\"$(cat app/generated.txt)\\" = built", "python3 -m unittest discover -s tests/unit -t ."]}')
    project.commit("a test stage that needs what the build made")
    first = project.json("run")
    second = project.json("run")  # the same commit: its build is reused, its workspace is a fresh export
    assert (first["state"], second["state"]) == ("waiting", "waiting"), (first["error"], second["error"])
    assert second["artifact_digest"] == first["artifact_digest"]  # built once, reused
