"""Issue 15, fleet commands: ``slipway exec ENV -- CMD`` on real OpenSSH hosts, streamed per host, audited."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.fleet.conftest import host_path, ssh_target
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(300)
SECRET = "s3cr3t-fleet-value"


def fleet_of_three(project: Project, bed: SSHTestBed) -> None:
    """staging on three SSH hosts: two web, one worker; each host has a deploy root with a marker file."""
    config_path = project.root / "slipway.yml"
    config = yaml.safe_load(config_path.read_text())
    roles = [["web"], ["web"], ["worker"]]
    config["environments"]["staging"]["targets"] = [
        {**ssh_target(bed, i, f"staging-{i + 1}"), "roles": roles[i], "connect_timeout": 3} for i in range(3)
    ]
    config["environments"]["staging"]["secrets"] = {"TOKEN": {"env": "FLEET_TOKEN"}}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("staging on three SSH hosts")
    project.env["FLEET_TOKEN"] = SECRET
    for i in range(3):
        root = host_path(bed, i, "app")
        root.mkdir(parents=True, exist_ok=True)
        (root / "marker").write_text("ok\n" if i < 2 else "no\n")


def audit(project: Project, action: str) -> list[dict[str, object]]:
    from slipway.services.app import open_app

    app = open_app(cwd=project.root, environ=project.env)
    try:
        return [json.loads(e.detail) for e in app.store.audit_log(limit=50) if e.action == action]
    finally:
        app.close()


def test_exec_runs_on_every_host_streams_each_ones_output_and_is_audited(
    project: Project, ssh_testbed: Callable[..., SSHTestBed]
) -> None:
    bed = ssh_testbed(3)
    fleet_of_three(project, bed)
    proc = project.slipway("exec", "staging", "--", "echo", "from", "$(cat", "marker)", f"{SECRET}")
    for i in range(3):
        assert f"[staging-{i + 1}] from {'ok' if i < 2 else 'no'} ***" in proc.stdout, proc.stdout
    assert SECRET not in proc.stdout + proc.stderr and "ran on 3 host(s) of staging" in proc.stdout
    [started] = audit(project, "fleet.exec")
    assert started["hosts"] == ["staging-1", "staging-2", "staging-3"] and SECRET not in json.dumps(started)
    [done] = audit(project, "fleet.exec.done")
    assert done["exit_codes"] == {"staging-1": 0, "staging-2": 0, "staging-3": 0}

    workers = project.slipway("exec", "staging", "--role", "worker", "--", "cat", "marker")
    assert "[staging-3] no" in workers.stdout and "staging-1" not in workers.stdout


def test_exec_names_the_hosts_where_it_failed_or_could_not_run(
    project: Project, ssh_testbed: Callable[..., SSHTestBed]
) -> None:
    bed = ssh_testbed(3)
    fleet_of_three(project, bed)
    failed = project.slipway("exec", "staging", "--", "grep", "-q", "ok", "marker", check=False)
    assert failed.returncode == 1 and "staging-3: exit code 1" in failed.stderr, failed.stderr
    assert "1 of 3 hosts failed" in failed.stderr
    bed.block(1)  # staging-2 stops answering: the others still run, and it is named
    try:
        blocked = project.slipway("exec", "staging", "--", "true", check=False)
    finally:
        bed.unblock(1)
    assert blocked.returncode == 1 and "staging-2:" in blocked.stderr and "1 of 3 hosts failed" in blocked.stderr
    [_, last] = audit(project, "fleet.exec.done")[:2]
    newest = audit(project, "fleet.exec.done")[0]
    assert newest["exit_codes"] == {"staging-1": 0, "staging-2": None, "staging-3": 0} and "staging-2" in newest["errors"]
    assert last["exit_codes"]["staging-3"] == 1
    unknown = project.slipway("exec", "staging", "--role", "db", "--", "true", check=False)
    assert unknown.returncode == 2 and "roles there: web, worker" in unknown.stderr
