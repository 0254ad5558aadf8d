"""The fault matrix: the installed ``slipway run`` is sent SIGTERM, SIGHUP or SIGKILL at each phase of a
rolling deployment to three real OpenSSH hosts, and every case ends with the same checks.

| fault   | build, transfer, before switch             | after switch, verify (h1 switched)         |
|---------|--------------------------------------------|--------------------------------------------|
| SIGTERM | exit 143, hosts untouched, run cancelled   | exit 143, h1 put back, run cancelled       |
| SIGHUP  | exit 129, as SIGTERM                       | exit 129, as SIGTERM                       |
| SIGKILL | hosts untouched; the next command records  | h1 stays on the unverified release, which  |
|         | the run interrupted and takes over the     | status says (mixed); the run is recorded   |
|         | lock; ``slipway resume RUN`` finishes it   | interrupted; ``slipway rollback ENV`` puts |
|         | (a build: the next run starts afresh)      | every host back on the release before      |

After every case: each host's ``current`` is a complete release (marker, not ``.partial``) that was verified
or ran before; ``status --json`` and ``history --json`` say what the hosts run; no lock names a dead process;
and the next ``slipway run`` deploys exactly the files of the new commit (sha256 on each host vs git).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import pytest

from tests.faults.support import (
    ENV,
    TRAP_WAIT,
    Case,
    assert_deploys_commit,
    assert_hosts_complete,
    assert_no_dead_lock,
    assert_store_matches_hosts,
    deployment_state,
    finish,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

#: The phase of the test's name -> the trap that stops the run there (transfer: an upload in progress).
PHASES = {"build": "build", "transfer": None, "before-switch": "configure", "after-switch": "activate",
          "verify": "verify"}
#: Signal -> the exit code of a slipway that handles it (a SIGKILLed process has no say: -9).
SIGNALS = {"SIGTERM": (signal.SIGTERM, 143), "SIGHUP": (signal.SIGHUP, 129), "SIGKILL": (signal.SIGKILL, -9)}
#: Big enough that the upload to a host takes a moment, so that it is caught in flight.
PAYLOAD = 16_000_000
FAULTED_RUN = 2


@dataclass
class Stopped:
    """How a signalled ``slipway run`` ended."""

    code: int
    out: str
    err: str
    #: Seconds from the signal to the exit.
    took: float
    #: Processes it started and left running.
    left: list[str]


def stop_in(case: Case, phase: str, sig: signal.Signals) -> Stopped:
    """Start ``slipway run`` for HEAD and deliver ``sig`` once it is in ``phase``."""
    trap_name = PHASES[phase]
    trap = case.trap(trap_name) if trap_name else None
    proc = case.start("run")
    try:
        if trap is not None:
            reached = trap.with_name(trap.name + ".reached")
            wait_for(lambda: reached.exists() or proc.poll() is not None, f"the {trap_name} trap")
            assert proc.poll() is None, f"slipway ended before the {phase} phase: {proc.communicate()}"
            proc.send_signal(sig)
        else:
            incoming = case.host_dir(0) / "app/.slipway/tmp"
            uploading = lambda: incoming.is_dir() and any(p.name.endswith(".objects") for p in incoming.iterdir())  # noqa: E731
            wait_for(lambda: uploading() or proc.poll() is not None, "the upload to h1")
            case.bed.pause(0)  # hold the upload where it is while the signal lands
            try:
                assert proc.poll() is None, f"slipway ended before the upload: {proc.communicate()}"
                assert uploading(), "the upload to h1 finished before it could be held"
                proc.send_signal(sig)
                time.sleep(0.2)
            finally:
                case.bed.resume(0)
        signalled = time.monotonic()
        code, out, err, left = finish(proc)
        return Stopped(code, out, err, time.monotonic() - signalled, left)
    finally:
        if proc.poll() is None:
            finish(proc, timeout=1)


@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("signame", list(SIGNALS))
def test_a_signal_at_each_phase_leaves_a_truthful_recoverable_fleet(new_case, signame: str, phase: str) -> None:
    sig, expected_exit = SIGNALS[signame]
    case = new_case()
    case.commit("a")
    case.ok("run")
    before = case.currents()
    assert len(set(before)) == 1 and before[0] is not None
    release_a = before[0]
    case.commit("b", payload=PAYLOAD if phase == "transfer" else 0)

    stopped = stop_in(case, phase, sig)
    assert stopped.code == expected_exit, (
        f"{signame} in {phase}: exit {stopped.code}, expected {expected_exit}\n{stopped.out}\n{stopped.err}"
    )

    if sig is signal.SIGKILL:
        after_kill(case, phase, release_a)
    else:
        assert stopped.took < TRAP_WAIT - 5, f"slipway took {stopped.took:.0f}s to stop after {signame}: it waited"
        assert stopped.left == [], f"slipway exited on {signame} and left its children running: {stopped.left}"
        assert case.currents() == before, f"after {signame} in {phase} the hosts run {case.currents()}"
        assert_hosts_complete(case, {release_a})
        assert_store_matches_hosts(case, {FAULTED_RUN: "cancelled"})
        if phase != "build":
            assert deployment_state(case, FAULTED_RUN) == "cancelled"
        assert case.locks() == [], f"{signame} left the lock: {case.locks()}"

    case.commit("c")
    case.ok("run")
    assert_deploys_commit(case, "c")
    assert_store_matches_hosts(case, {FAULTED_RUN: final_state(sig, phase)}, history=False)
    assert_no_dead_lock(case)
    assert case.locks() == []


def final_state(sig: signal.Signals, phase: str) -> str:
    """What the faulted run is recorded as once the case is over."""
    if sig is not signal.SIGKILL:
        return "cancelled"
    return "succeeded" if phase in ("transfer", "before-switch") else "interrupted"  # resumed, or rolled back


def after_kill(case: Case, phase: str, release_a: str) -> None:
    """A SIGKILLed run: what the hosts and the store say, then the way back a person takes."""
    switched = phase in ("after-switch", "verify")
    on_hosts = case.currents()
    if switched:
        assert on_hosts[0] != release_a and on_hosts[1:] == [release_a, release_a], on_hosts
        assert_hosts_complete(case, {release_a, on_hosts[0]})
    else:
        assert on_hosts == [release_a] * 3, on_hosts
        assert_hosts_complete(case, {release_a})
    status = assert_store_matches_hosts(case, {FAULTED_RUN: "interrupted"})  # the first command reconciles
    assert (status["release"] == "mixed") is switched
    if phase != "build":
        assert deployment_state(case, FAULTED_RUN) == "interrupted"
        assert "lock.takeover" in case.audit_actions(), "the dead process's lock was not taken over"
    assert_no_dead_lock(case)

    if switched:  # the way back: every host to the release the environment ran before
        case.ok("rollback", ENV, "--reason", "the run was killed mid-switch")
        assert case.currents() == [release_a] * 3
        assert_hosts_complete(case, {release_a})
    elif phase != "build":  # the way on: finish the deployment of b
        case.ok("resume", str(FAULTED_RUN))
        assert_deploys_commit(case, "b")
        assert deployment_state(case, FAULTED_RUN) == "succeeded"
    assert_no_dead_lock(case)
