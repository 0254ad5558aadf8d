"""Issue 14, "Queues, not failures", through the installed ``slipway``: a run whose environment another
process deploys waits in the environment's queue (recorded ``queued``, shown by ``status``), deploys on its
turn, and a newer pipeline run supersedes an older one still queued (docs/triggers.md).

Run 1 holds the environment: its activate hook waits while the test holds it (recovery_support.py), so
every other run arrives while the environment is busy. Every wait is on something observable, bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slipway.model.states import State
from tests.e2e.conftest import SLIPWAY
from tests.e2e.recovery_support import Recovering

pytestmark = pytest.mark.timeout(240)


@dataclass
class Background:
    """A ``slipway`` started in the background (its own process group), its stderr in a file."""

    proc: subprocess.Popen[str]
    stderr: Path

    def finish(self, timeout: float = 90) -> tuple[int, str]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
            raise AssertionError(f"slipway did not finish in {timeout}s\n{out}\n{self.stderr.read_text()}") from None
        return self.proc.returncode, out + self.stderr.read_text()


#: The processes a test started: any still running when it ends (a failed assertion) is killed and reaped.
STARTED: list[Background] = []


@pytest.fixture
def proj(tmp_path: Path) -> Iterator[Recovering]:
    project = Recovering(tmp_path / "proj", hosts=1)
    try:
        yield project
    finally:
        for path in project.gates.glob("hold-*"):
            path.unlink()
        while STARTED:
            bg = STARTED.pop()
            if bg.proc.poll() is None:
                os.killpg(bg.proc.pid, signal.SIGKILL)
                bg.proc.communicate(timeout=60)


def start(proj: Recovering, *args: str) -> Background:
    stderr = proj.stderr_file = proj.gates / f"stderr-{time.monotonic_ns()}.txt"  # wait_reached reads it
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [SLIPWAY, *args], cwd=proj.root, env=proj.env, stdout=subprocess.PIPE, stderr=err, text=True,
            start_new_session=True,
        )
    STARTED.append(Background(proc, stderr))
    return STARTED[-1]


def head(proj: Recovering) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=proj.root, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def configure(proj: Recovering, **queue: Any) -> None:
    proj.config["queue"] = queue
    proj.commit("queue settings")


def run_states(proj: Recovering) -> dict[int, str]:
    store = proj.store()
    try:
        return {run.id: run.state.value for run in store.list_runs(limit=50)}
    finally:
        store.close()


def wait_for(proj: Recovering, wanted: dict[int, str], *procs: Background, timeout: float = 90) -> None:
    """Until the runs are in these states; fails early when a process that should still run has exited."""
    deadline = time.monotonic() + timeout
    while True:
        found = run_states(proj)
        if all(found.get(run_id) == state for run_id, state in wanted.items()):
            return
        for bg in procs:
            if bg.proc.poll() is not None:
                raise AssertionError(f"slipway exited {bg.proc.returncode} early: {found}\n{bg.finish()[1]}")
        assert time.monotonic() < deadline, f"runs did not reach {wanted} in {timeout}s: {found}"
        time.sleep(0.1)


def busy(proj: Recovering) -> Background:
    """Run 1, holding ``prod``: its activate hook waits until the test lets it go."""
    proj.hold("prod-1", 1)
    first = start(proj, "run")
    proj.wait_reached("prod-1", 1, first.proc)
    return first


def deployed(proj: Recovering) -> list[int | None]:
    """The run of each deployment of prod, oldest first."""
    store = proj.store()
    try:
        return [d.run_id for d in reversed(store.deployments("prod", limit=50))]
    finally:
        store.close()


def audit(proj: Recovering, action: str) -> list[dict[str, Any]]:
    store = proj.store()
    try:
        return [{"subject": a.subject, **json.loads(a.detail)} for a in store.audit_log(limit=500) if a.action == action]
    finally:
        store.close()


def version_on_prod(proj: Recovering) -> str:
    return (proj.root / ".slipway/targets/prod-1/current/app/version.txt").read_text().strip()


def test_a_run_for_a_busy_environment_waits_in_its_queue_then_deploys(proj: Recovering) -> None:
    first = busy(proj)
    proj.new_version("v2")
    v2 = head(proj)
    second = start(proj, "run")
    wait_for(proj, {1: "running", 2: "queued"}, first, second)

    status = json.loads(proj.ok("status", "--json").stdout)
    [prod] = status["environments"]
    assert [(q["run_id"], q["commit"], q["stage"]) for q in prod["queue"]] == [(2, v2, "deploy-prod")]
    assert prod["queue"][0]["since"] is not None
    assert "prod is busy; queued: run 2" in proj.ok("status").stdout
    runs = {r["id"]: r for r in proj.history()}
    assert {s["name"]: s["state"] for s in runs[2]["stages"]} == {"build": "succeeded", "deploy-prod": "queued"}
    assert "⧗" in proj.ok("history").stdout
    assert deployed(proj) == [1]  # the second has not touched prod

    proj.let_go("prod-1", 1)
    assert first.finish()[0] == 0
    code, output = second.finish()
    assert code == 0, output
    assert "run 2 is queued for prod behind the deployment of tester (run 1" in output
    assert run_states(proj) == {1: "succeeded", 2: "succeeded"}
    assert deployed(proj) == [1, 2] and version_on_prod(proj) == "v2"
    assert [e["environment"] for e in audit(proj, "run.queued")] == ["prod"]
    assert json.loads(proj.ok("status", "--json").stdout)["environments"][0]["queue"] == []


def test_a_newer_run_supersedes_the_one_queued_before_it(proj: Recovering) -> None:
    first = busy(proj)
    proj.new_version("v2")
    second = start(proj, "run")
    wait_for(proj, {2: "queued"}, first, second)
    proj.new_version("v3")
    v3 = head(proj)
    third = start(proj, "run")
    wait_for(proj, {2: "superseded", 3: "queued"}, first, third)

    code, output = second.finish()
    assert code == 9, output  # its artifact did not go out: a superseded run's exit code
    assert f"run 2 was superseded by run 3: run 3 (commit {v3[:12]}) is queued for prod after it" in output
    assert "Traceback" not in output
    runs = {r["id"]: r for r in proj.history()}
    assert {s["name"]: s["state"] for s in runs[2]["stages"]} == {"build": "succeeded", "deploy-prod": "superseded"}
    [entry] = audit(proj, "run.superseded")
    assert entry["subject"] == "run 2" and "superseded by run 3" in entry["reason"] and v3[:12] in entry["reason"]

    proj.let_go("prod-1", 1)
    assert first.finish()[0] == 0
    code, output = third.finish()
    assert code == 0, output
    assert run_states(proj) == {1: "succeeded", 2: "superseded", 3: "succeeded"}
    assert deployed(proj) == [1, 3] and version_on_prod(proj) == "v3"


def test_without_superseding_the_queue_deploys_every_run_oldest_first(proj: Recovering) -> None:
    configure(proj, supersede=False)
    first = busy(proj)
    proj.new_version("v2")
    second = start(proj, "run")
    wait_for(proj, {2: "queued"}, first, second)
    proj.new_version("v3")
    third = start(proj, "run")
    wait_for(proj, {2: "queued", 3: "queued"}, first, second, third)
    assert audit(proj, "run.superseded") == []

    proj.hold("prod-1", 2)  # the second's deployment: the third must wait behind it, not overtake
    proj.let_go("prod-1", 1)
    assert first.finish()[0] == 0
    proj.wait_reached("prod-1", 2, second.proc)
    assert run_states(proj)[3] == "queued" and deployed(proj) == [1, 2]
    proj.let_go("prod-1", 2)
    for bg in (second, third):
        code, output = bg.finish()
        assert code == 0, output
    assert run_states(proj) == {1: "succeeded", 2: "succeeded", 3: "succeeded"}
    assert deployed(proj) == [1, 2, 3] and version_on_prod(proj) == "v3"


def test_when_busy_fail_keeps_failing_at_once_with_the_holder_named(proj: Recovering) -> None:
    configure(proj, when_busy="fail")
    first = busy(proj)
    try:
        proj.new_version("v2")
        refused = proj.slipway("run")
        assert refused.returncode == 11, refused.stderr
        assert "environment prod is locked by tester (run 1" in refused.stderr
        assert run_states(proj)[2] == "failed" and audit(proj, "run.queued") == []
    finally:
        proj.let_go("prod-1", 1)
    assert first.finish()[0] == 0


def test_a_signal_to_a_queued_run_cancels_it_and_leaves_the_deployment_ahead_alone(proj: Recovering) -> None:
    first = busy(proj)
    proj.new_version("v2")
    second = start(proj, "run")
    wait_for(proj, {2: "queued"}, first, second)
    second.proc.send_signal(signal.SIGTERM)
    code, output = second.finish()
    assert code == 143, output
    runs = {r["id"]: r for r in proj.history()}
    assert runs[2]["state"] == "cancelled"
    assert {s["name"]: s["state"] for s in runs[2]["stages"]}["deploy-prod"] == "cancelled"
    store = proj.store()
    try:
        [lock] = [lock for lock in store.locks() if lock.name == "environment prod"]
    finally:
        store.close()
    assert "(run 1," in lock.holder  # the first still holds it, untouched
    proj.let_go("prod-1", 1)
    assert first.finish()[0] == 0
    assert deployed(proj) == [1] and version_on_prod(proj) == "v1"


def test_a_queued_run_whose_process_is_killed_is_found_interrupted(proj: Recovering) -> None:
    first = busy(proj)
    proj.new_version("v2")
    second = start(proj, "run")
    wait_for(proj, {2: "queued"}, first, second)
    os.killpg(second.proc.pid, signal.SIGKILL)
    second.finish()
    runs = {r["id"]: r for r in proj.history()}  # this command reconciles the store
    assert runs[2]["state"] == "interrupted" and "the process driving it died" in runs[2]["error"]
    assert {s["name"]: s["state"] for s in runs[2]["stages"]}["deploy-prod"] == "interrupted"
    assert json.loads(proj.ok("status", "--json").stdout)["environments"][0]["queue"] == []
    proj.let_go("prod-1", 1)
    assert first.finish()[0] == 0
    assert deployed(proj) == [1]


def test_a_run_waits_at_most_its_stage_timeout_then_fails_naming_the_holder(proj: Recovering) -> None:
    proj.config["pipeline"][1]["timeout"] = 1.5
    proj.commit("a short deploy stage")
    first = busy(proj)
    try:
        proj.new_version("v2")
        timed_out = proj.slipway("run")
        assert timed_out.returncode == 11, timed_out.stderr
        assert re.search(
            r"prod stayed busy: run 2 waited [\d.]+ s in its queue \(the deploy stage's timeout is 1.5 s\) "
            r"behind the deployment of tester \(run 1,",
            " ".join(timed_out.stderr.split()),
        ), timed_out.stderr
        assert "nothing was deployed" in timed_out.stderr and "Traceback" not in timed_out.stderr
        runs = {r["id"]: r for r in proj.history()}
        assert runs[2]["state"] == "failed" and "stayed busy" in runs[2]["error"]
        assert {s["name"]: s["state"] for s in runs[2]["stages"]}["deploy-prod"] == State.FAILED.value
    finally:
        proj.let_go("prod-1", 1)
    assert first.finish()[0] == 0
    assert deployed(proj) == [1] and version_on_prod(proj) == "v1"


def test_a_promotion_queues_too_and_a_newer_pipeline_run_waits_behind_it(proj: Recovering) -> None:
    first = busy(proj)
    store = proj.store()
    try:
        digest = store.get_run(1).artifact_digest
    finally:
        store.close()
    assert digest is not None
    promotion = start(proj, "promote", digest, "--to", "prod")
    wait_for(proj, {2: "queued"}, first, promotion)
    proj.new_version("v2")
    third = start(proj, "run")
    wait_for(proj, {2: "queued", 3: "queued"}, first, promotion, third)  # a promotion is never superseded

    proj.let_go("prod-1", 1)
    for bg in (first, promotion, third):
        code, output = bg.finish()
        assert code == 0, output
    assert run_states(proj) == {1: "succeeded", 2: "succeeded", 3: "succeeded"}
    assert deployed(proj) == [1, 2, 3] and version_on_prod(proj) == "v2"


def test_without_superseding_runs_waiting_at_a_gate_are_left_waiting(proj: Recovering) -> None:
    proj.config["pipeline"].insert(1, {"name": "approve-prod", "kind": "approval"})
    configure(proj, supersede=False)
    proj.ok("run")
    proj.new_version("v2")
    proj.ok("run")  # reaches the same gate: with supersede (the default) run 1 would be superseded here
    assert run_states(proj) == {1: "waiting", 2: "waiting"}
    proj.ok("approve", "2", "--reason", "v2 is good")  # deploys prod, which run 1 deploys after its gate
    assert run_states(proj) == {1: "waiting", 2: "succeeded"}
    assert audit(proj, "run.superseded") == [] and version_on_prod(proj) == "v2"
