"""Signals, crashes and locks, through the installed ``slipway`` with local targets (docs/guarantees.md).

Each fault lands at a precise phase: an activate hook that a test holds (see recovery_support.py).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.recovery_support import Recovering

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def proj(tmp_path: Path) -> Recovering:
    return Recovering(tmp_path / "proj")


def deploy_v1(proj: Recovering) -> str:
    """The first run: every host on one verified release; returns it."""
    proj.ok("run")
    releases = set(proj.currents().values())
    assert len(releases) == 1 and None not in releases
    return str(releases.pop())


def audit_actions(proj: Recovering) -> list[str]:
    store = proj.store()
    try:
        return [a.action for a in store.audit_log(limit=500)]
    finally:
        store.close()


def lock_names(proj: Recovering) -> list[str]:
    store = proj.store()
    try:
        return [lock.name for lock in store.locks()]
    finally:
        store.close()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_a_signal_during_activate_reverts_every_switched_host_records_cancelled_and_unlocks(
    proj: Recovering, sig: signal.Signals, code: int
) -> None:
    old = deploy_v1(proj)
    proj.new_version("v2")
    proj.hold("prod-2", 2)  # prod-1 already runs v2 (verified); prod-2 switched and is activating
    proc = proj.start("run")
    proj.wait_reached("prod-2", 2, proc)
    proc.send_signal(sig)
    exit_code, output = proj.finish(proc)
    proj.let_go("prod-2", 2)
    assert exit_code == code, output
    assert sig.name in output
    assert proj.currents() == {"prod-1": old, "prod-2": old}
    assert proj.calls("prod-1") == 3 and proj.calls("prod-2") == 3  # each was restarted on the old release
    run = proj.history()[0]
    assert run["state"] == "cancelled"
    assert [s["state"] for s in run["stages"]] == ["succeeded", "cancelled"]
    assert lock_names(proj) == []
    assert proj.status_hosts() == proj.currents()


def test_a_second_sigterm_during_the_revert_does_not_abandon_it(proj: Recovering) -> None:
    old = deploy_v1(proj)
    proj.new_version("v2")
    proj.hold("prod-2", 2)
    proj.hold("prod-1", 3)  # prod-1's revert (its third activate) waits
    proc = proj.start("run")
    proj.wait_reached("prod-2", 2, proc)
    proc.send_signal(signal.SIGTERM)
    proj.wait_reached("prod-1", 3, proc)
    proc.send_signal(signal.SIGTERM)
    proj.wait_stderr("already stopping")
    proj.let_go("prod-1", 3)
    exit_code, output = proj.finish(proc)
    proj.let_go("prod-2", 2)
    assert exit_code == 143, output
    assert proj.currents() == {"prod-1": old, "prod-2": old}
    assert proj.calls("prod-1") == 3 and proj.calls("prod-2") == 3
    assert proj.history()[0]["state"] == "cancelled"
    assert lock_names(proj) == []


def crash_mid_switch(proj: Recovering) -> tuple[str, int]:
    """v1 everywhere, then v2 killed with SIGKILL while prod-2 activates: 2 of 3 hosts on v2."""
    old = deploy_v1(proj)
    proj.new_version("v2")
    proj.hold("prod-2", 2)
    proc = proj.start("run")
    proj.wait_reached("prod-2", 2, proc)
    proc.kill()
    proj.finish(proc)
    proj.let_go("prod-2", 2)
    currents = proj.currents()
    assert currents["prod-1"] == currents["prod-2"] != old and currents["prod-3"] == old
    return old, proj.history()[0]["id"]


def test_kill_9_mid_switch_is_recorded_interrupted_its_lock_taken_over_and_rollback_puts_every_host_back(
    tmp_path: Path,
) -> None:
    proj = Recovering(tmp_path / "proj", hosts=3)
    old, run_id = crash_mid_switch(proj)
    run = proj.history()[0]  # the command after the crash reconciled the dead process's records
    assert run["id"] == run_id and run["state"] == "interrupted"
    assert [s["state"] for s in run["stages"]] == ["succeeded", "interrupted"]
    deployment = json.loads(proj.ok("deployments", "prod", "--json").stdout)[0]
    assert deployment["state"] == "interrupted"
    assert lock_names(proj) == []
    assert "lock.takeover" in audit_actions(proj)
    proj.ok("rollback", "prod", "--reason", "the deploy crashed")
    assert proj.currents() == {"prod-1": old, "prod-2": old, "prod-3": old}
    assert proj.status_hosts() == proj.currents()


def test_resume_continues_an_interrupted_run_and_refuses_a_finished_one(tmp_path: Path) -> None:
    proj = Recovering(tmp_path / "proj", hosts=3)
    old, run_id = crash_mid_switch(proj)
    proc = proj.ok("resume", str(run_id))
    assert f"run {run_id} succeeded" in proc.stdout
    currents = proj.currents()
    assert len(set(currents.values())) == 1 and old not in currents.values()
    for host in currents:
        assert (proj.root / ".slipway/targets" / host / "current/app/version.txt").read_text() == "v2\n"
    assert proj.history()[0]["state"] == "succeeded"
    assert proj.status_hosts() == currents
    again = proj.slipway("resume", str(run_id))
    assert again.returncode == 9
    assert "succeeded" in again.stderr and "interrupted or cancelled" in again.stderr


def test_a_resumed_deployment_that_fails_puts_every_host_back_on_the_last_good_release(tmp_path: Path) -> None:
    # After the crash prod-1 and prod-2 run v2, never verified by a deployment that succeeded. If the
    # resumed deployment fails, they must not stay there: the environment goes back to what it ran before.
    proj = Recovering(tmp_path / "proj", hosts=3)
    old, run_id = crash_mid_switch(proj)
    proj.fail("prod-3", 2)  # the resumed deployment's activate hook on prod-3
    proc = proj.slipway("resume", str(run_id))
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert proj.currents() == {"prod-1": old, "prod-2": old, "prod-3": old}
    assert proj.status_hosts() == proj.currents()
    assert proj.history()[0]["state"] == "failed"


def test_resume_continues_a_cancelled_run(proj: Recovering) -> None:
    deploy_v1(proj)
    proj.new_version("v2")
    proj.hold("prod-1", 2)
    proc = proj.start("run")
    proj.wait_reached("prod-1", 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proj.finish(proc)[0] == 143
    proj.let_go("prod-1", 2)
    run_id = proj.history()[0]["id"]
    proj.ok("resume", str(run_id))
    assert proj.history()[0]["state"] == "succeeded"
    for host in ("prod-1", "prod-2"):
        assert (proj.root / ".slipway/targets" / host / "current/app/version.txt").read_text() == "v2\n"


def test_unlock_refuses_a_live_holder_without_force_and_records_a_forced_removal(proj: Recovering) -> None:
    proj.hold("prod-1", 1)
    proc = proj.start("run")
    proj.wait_reached("prod-1", 1, proc)
    try:
        refused = proj.slipway("unlock", "prod")
        assert refused.returncode == 11, refused.stderr
        assert "alive" in refused.stderr and "--force" in refused.stderr
        assert "environment prod" in lock_names(proj)
        forced = proj.ok("unlock", "prod", "--force")
        assert "removed" in forced.stdout
        assert "environment prod" not in lock_names(proj)
        store = proj.store()
        try:
            entry = next(a for a in store.audit_log() if a.action == "lock.remove")
        finally:
            store.close()
        assert json.loads(entry.detail)["forced"] is True
    finally:
        proj.let_go("prod-1", 1)
        proj.finish(proc)


def test_unlock_of_a_dead_holder_needs_no_force(proj: Recovering) -> None:
    proj.hold("prod-1", 1)
    proc = proj.start("run")
    proj.wait_reached("prod-1", 1, proc)
    proc.kill()
    proj.finish(proc)
    proj.let_go("prod-1", 1)
    out = proj.ok("unlock", "prod")  # the store was reconciled when unlock opened it: nothing left to unlock
    assert "was not locked" in out.stdout
    assert lock_names(proj) == []
