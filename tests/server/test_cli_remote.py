"""The CLI talking to a server (``--server``/SLIPWAY_SERVER with SLIPWAY_TOKEN) gives what it gives locally:
the same JSON, the same lines, the same exit codes; and the server records the token's user."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from tests.server.conftest import Server
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(400)


def cli(server: Server, *args: str, user: str | None = None, remote: bool = True) -> subprocess.CompletedProcess[str]:
    """``slipway ARGS`` in the project, through the server as ``user`` (or on the local store)."""
    extra = {"SLIPWAY_SERVER": server.url, "SLIPWAY_TOKEN": server.tokens[user] if user else ""} if remote else {}
    return server.project.slipway(*args, check=False, extra_env=extra)


def remote_json(server: Server, *args: str, user: str = "viewer") -> Any:
    proc = cli(server, *args, "--json", user=user)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_remote_commands_give_the_local_output_and_record_the_token_user(server: Server) -> None:
    started = cli(server, "run", user="deployer")
    assert started.returncode == 0, started.stderr
    run_id = int(re.search(r"run (\d+) is waiting for approval", started.stdout).group(1))  # type: ignore[union-attr]
    assert "deploy-staging" in started.stderr or "deploy-staging" in started.stdout  # progress streamed live

    refused = cli(server, "approve", str(run_id), "--reason", "me", user="deployer")
    assert refused.returncode == 9
    assert "deployer may not approve on production" in refused.stderr and "slipway users grant" in refused.stderr

    approved = cli(server, "approve", str(run_id), "--reason", "ship it", user="approver")
    assert approved.returncode == 0, approved.stderr
    assert re.search(rf"run {run_id} succeeded; artifact sha256:", approved.stdout)
    assert "deploy-production" in approved.stdout + approved.stderr

    for args in (["status"], ["history"], ["deployments"], ["deployments", "production"]):
        assert remote_json(server, *args) == server.project.json(*args), args
    local_logs = cli(server, "logs", str(run_id), remote=False)
    assert cli(server, "logs", str(run_id), user="viewer").stdout == local_logs.stdout
    history = server.project.json("history")
    assert history[0]["triggered_by"] == "deployer"
    assert history[0]["approvals"][0]["by"] == "approver"

    unlocked = cli(server, "unlock", "production", user="deployer")
    assert (unlocked.returncode, unlocked.stdout.strip()) == (0, "production was not locked")


def test_a_failing_run_exits_with_the_code_it_exits_with_locally(server: Server) -> None:
    anchor = "    def test_items_round_trip(self) -> None:"
    broken = "    def test_broken(self) -> None:\n        raise AssertionError('broken on purpose')\n\n"
    server.project.edit("tests/unit/test_store.py", anchor, broken + anchor)
    server.project.commit("webapp: a broken unit test")
    remote_run = cli(server, "run", user="deployer")
    local_run = cli(server, "run", remote=False)
    assert remote_run.returncode == local_run.returncode == 1, remote_run.stderr
    errors = [[line for line in p.stderr.splitlines() if line.startswith(("error:", "→"))] for p in (remote_run, local_run)]
    assert errors[0] == errors[1] and "test hook failed" in errors[0][0]


def test_remote_usage_errors(server: Server) -> None:
    no_token = cli(server, "status")
    assert no_token.returncode == 2 and "SLIPWAY_TOKEN" in no_token.stderr
    bad_token = server.project.slipway("status", check=False, extra_env={"SLIPWAY_SERVER": server.url, "SLIPWAY_TOKEN": "slw_nope"})
    assert bad_token.returncode == 9 and "not valid" in bad_token.stderr
    with_as = cli(server, "--as", "bob", "status", user="viewer")
    assert with_as.returncode == 2 and "--as cannot be used with a server" in with_as.stderr
    unknown = cli(server, "--project", "nope", "status", user="viewer")
    assert unknown.returncode == 9 and "no project 'nope'" in unknown.stderr
    down = server.project.slipway(
        "status", check=False, extra_env={"SLIPWAY_SERVER": f"http://127.0.0.1:{free_port()}", "SLIPWAY_TOKEN": "slw_x"}
    )
    assert down.returncode == 12 and "does not answer" in down.stderr
