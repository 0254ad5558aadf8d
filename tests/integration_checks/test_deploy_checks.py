"""Verify checks of every kind through real deployments of the example app, and what a failure does."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from tests.e2e.conftest import Project
from tests.integration_checks.conftest import config
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(240)

#: One passing verify check of every kind. Templated per host and release like hooks.
PASSING = """\
    - kind: http
      name: health serves this release
      url: "{{{{ environment.url }}}}/health"
      json_path: $.commit
      json_equals: "{{{{ release.commit }}}}"
      retries: 20
      backoff: {{initial: 0.1, factor: 1, max: 0.1}}
    - {{kind: tcp, name: port open, host: 127.0.0.1, port: {port}}}
    - {{kind: command, name: release marker, run: cat .slipway-release, output_matches: "{{{{ release.id }}}}"}}
    - {{kind: sql, name: database answers, url: "{sql_url}", query: "SELECT 40 + 2", expect: 42}}
    - {{kind: dns, name: localhost resolves, host: localhost, expect_address: 127.0.0.1}}
"""

#: The same five, each expecting what is not there.
FAILING = """\
    - {{kind: http, name: health serves this release, url: "{{{{ environment.url }}}}/health", json_path: $.commit, json_equals: "not-this-commit"}}
    - {{kind: tcp, name: port open, host: 127.0.0.1, port: {closed}, timeout: 2}}
    - {{kind: command, name: release marker, run: "echo broken; exit 3"}}
    - {{kind: sql, name: database answers, url: "{sql_url}", query: "SELECT 40 + 2", expect: 41}}
    - {{kind: dns, name: localhost resolves, host: localhost, expect_address: 10.255.255.1}}
"""
NAMES = ["health serves this release", "port open", "release marker", "database answers", "localhost resolves"]


def health(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
        return dict(json.loads(resp.read()))


def check_steps(project: Project, run_id: int) -> dict[str, str]:
    """``check: <name>`` -> the block `slipway logs` shows for it (icon line and log lines)."""
    text = project.slipway("logs", str(run_id)).stdout
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if "check: " in line and "[dev-1]" in line:
            current = line.split("check: ", 1)[1].split("  ")[0].rsplit(" ", 1)[0].strip()
            blocks[current] = line + "\n"
        elif current and line.startswith("    "):
            blocks[current] += line + "\n"
        else:
            current = None
    return blocks


def new_release(project: Project, note: str) -> None:
    """Change the app itself, so that the next commit builds a new artifact (not only a new slipway.yml)."""
    init = project.root / "app/__init__.py"
    init.write_text(init.read_text() + f"# {note}\n")


def last_run(project: Project) -> dict[str, object]:
    runs = project.json("history", "--limit", "1")
    return dict(runs[0])


def deploy_v1(project: Project, sql_url: str) -> str:
    port = project.ports["dev"]
    (project.root / "slipway.yml").write_text(config(port, checks=PASSING.format(port=port, sql_url=sql_url)))
    commit = project.commit("v1 with verify checks")
    done = project.slipway("run", "--json")
    assert json.loads(done.stdout)["state"] == "succeeded", done.stderr
    return commit


@pytest.mark.postgres
def test_every_check_kind_passes_then_fails_and_the_release_is_rolled_back(project: Project, postgres_url: str) -> None:
    port = project.ports["dev"]
    commit_one = deploy_v1(project, postgres_url)
    run_one = int(str(last_run(project)["id"]))
    passed = check_steps(project, run_one)
    assert sorted(passed) == sorted(NAMES), passed
    assert all("✓" in block and "passed after" in block for block in passed.values()), passed
    release_one = project.status()["dev"]["release"]

    failing = FAILING.format(closed=free_port(), sql_url=postgres_url)
    (project.root / "slipway.yml").write_text(config(port, checks=failing))
    new_release(project, "v2")
    project.commit("v2 whose verify checks fail")
    refused = project.slipway("run", check=False)
    assert refused.returncode == 6, refused.stderr  # a deployment that failed and was reverted
    assert "hosts already switched were reverted" in refused.stderr
    run_two = int(str(last_run(project)["id"]))
    failed = check_steps(project, run_two)
    assert sorted(failed) == sorted(NAMES)
    evidence = {name: block for name, block in failed.items() if "✗" in block and "failed after" in block}
    assert sorted(evidence) == sorted(NAMES), failed
    assert (
        "expected" in evidence["health serves this release"]
        and "not-this-commit" in evidence["health serves this release"]
    )
    assert "exit" in evidence["release marker"] and "broken" in evidence["release marker"]
    assert "42" in evidence["database answers"]
    assert "127.0.0.1" in evidence["localhost resolves"]

    # Rolled back: current, the store and the running app are on release one again.
    assert os.readlink(project.root / ".slipway/targets/dev/current") == f"releases/{release_one}"
    assert project.status()["dev"]["release"] == release_one
    assert health(port)["commit"] == commit_one
    [latest, *_] = project.json("deployments", "dev")
    assert latest["state"] == "failed"
    [host] = latest["hosts"]
    assert "reverted to " + release_one in host["error"]


@pytest.mark.postgres
def test_halt_leaves_the_hosts_and_says_which_command_comes_next(project: Project, postgres_url: str) -> None:
    port = project.ports["dev"]
    deploy_v1(project, postgres_url)
    release_one = project.status()["dev"]["release"]
    # A sound check, a broken release: v2 ships a file that marks it broken.
    sound = "    - {kind: command, name: release is sound, run: 'test ! -e app/BROKEN'}"
    (project.root / "slipway.yml").write_text(config(port, checks=sound, env_extra="    on_failure: halt"))
    (project.root / "app/BROKEN").write_text("v2 is broken\n")
    commit_two = project.commit("v2, halted for a person")
    halted = project.slipway("run", check=False)
    assert halted.returncode == 6, halted.stderr
    assert "halted (on_failure: halt)" in halted.stderr
    command = f"slipway rollback dev --to {release_one} --reason TEXT"
    assert command in " ".join(halted.stderr.split()), halted.stderr

    # Left as it is: current, the store and the app are on release two; the deployment is recorded as failed.
    release_two = os.readlink(project.root / ".slipway/targets/dev/current").removeprefix("releases/")
    assert release_two != release_one and project.status()["dev"]["release"] == release_two
    assert health(port)["commit"] == commit_two
    [latest, *_] = project.json("deployments", "dev")
    assert latest["state"] == "failed" and "halted" in latest["reason"]

    # The command it named works.
    project.slipway("rollback", "dev", "--to", release_one, "--reason", "halted: verify failed")
    assert os.readlink(project.root / ".slipway/targets/dev/current") == f"releases/{release_one}"
