"""The parts of recovery that need no CLI: resumable states, process identity, the journal, the runner."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from slipway.engine.events import NullObserver
from slipway.engine.runner import drive_run
from slipway.errors import LockHeld, StateError
from slipway.model.records import StageRecord
from slipway.model.states import FINAL, RESUMABLE, DeploymentKind, RunKind, StageKind, State, can_transition
from slipway.processes import ProcessId, is_dead, machine, parse_holder, start_time, this_process
from slipway.store import journal
from slipway.store.journal import Journal
from slipway.store.repository import Store

pytestmark = pytest.mark.timeout(60)


def new_store(tmp_path: Path, *, with_journal: bool = False) -> Store:
    return Store(f"sqlite:///{tmp_path / 'state.db'}", journal=Journal(tmp_path / "journal") if with_journal else None)


def new_run(store: Store) -> int:
    return store.create_run(
        project="p",
        kind=RunKind.PIPELINE,
        commit="c" * 40,
        triggered_by="ann",
        config_text="name: p",
        config_path="/p/slipway.yml",
        stages=[("build", StageKind.BUILD, None), ("deploy", StageKind.DEPLOY, "prod")],
    )


# ---- states --------------------------------------------------------------------------------------------
def test_a_running_run_can_be_interrupted_and_resumed_but_final_states_stay_final() -> None:
    assert can_transition(State.RUNNING, State.INTERRUPTED)
    for stopped in RESUMABLE:
        assert can_transition(stopped, State.RUNNING) and can_transition(stopped, State.PENDING)
        assert not can_transition(stopped, State.SUCCEEDED) and stopped.has_ended and not stopped.is_final
    assert State.INTERRUPTED not in FINAL and State.CANCELLED not in FINAL


# ---- processes -----------------------------------------------------------------------------------------
def test_a_holder_text_names_its_process_and_reads_back() -> None:
    me = this_process()
    assert me.pid == os.getpid() and me.started is not None and me.host == machine()
    assert parse_holder(f"ann (run 3, {me.describe()})") == me
    assert parse_holder("ann (run 3, pid 12 on box)") == ProcessId(12, "box", None)  # written before start times
    assert parse_holder("ann (run 3)") is None


def test_only_a_process_gone_from_this_machine_is_dead() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        alive = ProcessId(child.pid, machine(), start_time(child.pid))
        assert not is_dead(alive)
        assert is_dead(ProcessId(child.pid, machine(), (alive.started or 0) + 1))  # the pid was reused
        assert not is_dead(ProcessId(child.pid, "another-machine", 1))  # never judged from here
    finally:
        child.kill()
        child.wait(timeout=10)
    assert is_dead(alive)


# ---- the store -----------------------------------------------------------------------------------------
def test_a_lock_of_a_dead_holder_is_taken_over_and_audited(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    try:
        store.acquire_lock("environment prod", "ann (run 1, pid 1 on box)", ttl=600)
        with pytest.raises(LockHeld):
            store.acquire_lock("environment prod", "bob (run 2)", ttl=600, is_dead=lambda holder: False)
        store.acquire_lock("environment prod", "bob (run 2)", ttl=600, is_dead=lambda holder: "ann" in holder)
        assert [lock.holder for lock in store.locks()] == ["bob (run 2)"]
        entry = store.audit_log()[0]
        assert entry.action == "lock.takeover" and "ann (run 1" in json.loads(entry.detail)["dead_holder"]
    finally:
        store.close()


def test_interrupting_a_run_records_its_stages_steps_and_deployments(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    try:
        run_id = new_run(store)
        build, deploy = store.get_run(run_id).stages
        store.set_run_state(run_id, State.RUNNING)
        store.set_stage_state(build.id, State.RUNNING)
        store.set_stage_state(build.id, State.SUCCEEDED)
        store.set_stage_state(deploy.id, State.RUNNING)
        step = store.start_step(deploy.id, name="activate", host="h1", command="x")
        store.start_deployment(
            environment="prod",
            kind=DeploymentKind.DEPLOY,
            run_id=run_id,
            artifact_digest="sha256:" + "0" * 64,
            release_id="r1",
            deployed_by="ann",
        )
        assert store.interrupt_run(run_id, reason="the process died")
        run = store.get_run(run_id)
        assert run.state is State.INTERRUPTED and [s.state for s in run.stages] == [State.SUCCEEDED, State.INTERRUPTED]
        assert store.steps(run_id)[0][1].state is State.INTERRUPTED and store.steps(run_id)[0][1].id == step
        assert store.deployments("prod")[0].state is State.INTERRUPTED
        assert not store.interrupt_run(run_id, reason="again")  # only a running run
    finally:
        store.close()


def test_writes_the_store_refuses_are_journalled_in_order_and_replayed(tmp_path: Path) -> None:
    store = new_store(tmp_path, with_journal=True)
    run_id = new_run(store)
    stage = store.get_run(run_id).stages[0]
    store.set_run_state(run_id, State.RUNNING)
    store.set_stage_state(stage.id, State.RUNNING)
    store.acquire_lock("environment prod", "me", ttl=600)
    # The store stops answering: a real engine whose database cannot be reached.
    broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'state.db'}")
    good = store._sessions
    store._sessions = sessionmaker(broken, expire_on_commit=False)
    step = store.start_step(stage.id, name="activate", host="h1", command="x")
    assert step < 0 and store.unavailable is not None
    store.finish_step(step, State.SUCCEEDED, exit_code=0, log="ok")
    store.set_host_release(
        environment="prod",
        host="h1",
        release_id="r0",
        artifact_digest="sha256:0",
        commit="c",
        deployment_id=1,
        run_id=run_id,
    )
    store.set_stage_state(stage.id, State.FAILED, error="store gone")
    store.set_run_state(run_id, State.FAILED, error="store gone")
    store.release_lock("environment prod", "me")
    assert store.journal is not None and store.journal.path is not None
    assert store.journal.path.stat().st_mode & 0o777 == 0o600 and store.journal.entries == 6
    store._sessions = good  # the store answers again: the next command replays
    assert journal.replay(store, tmp_path / "journal") == 0  # not while its writer still holds it
    store.journal.close()
    with pytest.raises(StateError):
        store.get_run(10_000)
    assert journal.replay(store, tmp_path / "journal") == 6
    assert journal.pending(tmp_path / "journal") == []
    run = store.get_run(run_id)
    assert run.state is State.FAILED and run.stages[0].state is State.FAILED
    assert [(s.name, s.state, s.log) for _, s in store.steps(run_id)] == [("activate", State.SUCCEEDED, "ok")]
    assert [h.release_id for h in store.host_releases("prod")] == ["r0"] and store.locks() == []
    store.close()


def test_an_entry_the_store_refuses_is_set_aside_and_the_rest_is_replayed(tmp_path: Path) -> None:
    # A PostgreSQL with synchronous_commit = off can forget its last commits in a crash: a journalled host
    # record may then name a deployment the store no longer has. Replay must not stop every command on it.
    store = new_store(tmp_path, with_journal=True)
    run_id = new_run(store)
    store.set_run_state(run_id, State.RUNNING)
    good = store._sessions
    store._sessions = sessionmaker(create_engine(f"sqlite:///{tmp_path / 'missing' / 'state.db'}"))
    store.record_host(999, host="h1", from_release="r0", to_release="r1", state=State.FAILED, error="x", duration=0)
    store.set_run_state(run_id, State.FAILED, error="store gone")
    assert store.journal is not None and store.journal.entries == 2
    store.journal.close()
    store._sessions = good
    assert journal.replay(store, tmp_path / "journal") == 2
    assert journal.pending(tmp_path / "journal") == []
    assert store.get_run(run_id).state is State.FAILED  # the entry after the refused one was written
    [aside] = (tmp_path / "journal" / "rejected").iterdir()
    kept = json.loads(aside.read_text())
    assert kept["op"] == "record_host" and "FOREIGN KEY" in kept["refused"].upper()
    assert aside.stat().st_mode & 0o777 == 0o600
    store.close()


# ---- the runner ----------------------------------------------------------------------------------------
def test_an_unexpected_exception_in_a_stage_fails_the_stage_and_the_run(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    run_id = new_run(store)

    async def broken(stage: StageRecord) -> State:
        raise KeyError("a bug")

    async def fine(stage: StageRecord) -> State:
        return State.SUCCEEDED

    handlers = {StageKind.BUILD: fine, StageKind.DEPLOY: broken}
    with pytest.raises(KeyError):
        asyncio.run(drive_run(store, run_id, handlers, NullObserver(), actor="ann"))
    run = store.get_run(run_id)
    assert run.state is State.FAILED and [s.state for s in run.stages] == [State.SUCCEEDED, State.FAILED]
    assert run.error and "internal error: KeyError" in run.error
    store.close()


def test_a_signal_to_a_run_superseded_while_queued_leaves_it_superseded(tmp_path: Path) -> None:
    """The race of a newer run superseding a queued one in the same instant a signal stops it: the run stays
    recorded superseded (true: nothing of it was deployed), and the signal still stops the process."""
    store = new_store(tmp_path)
    run_id = new_run(store)

    async def fine(stage: StageRecord) -> State:
        return State.SUCCEEDED

    async def queued_then_superseded_then_signalled(stage: StageRecord) -> State:
        assert store.join_queue(run_id, stage.id, environment="prod", behind="run 9", actor="ann")
        assert store.supersede_run(run_id, reason="superseded by run 10", actor="bob")
        raise asyncio.CancelledError("interrupted by SIGTERM")

    handlers = {StageKind.BUILD: fine, StageKind.DEPLOY: queued_then_superseded_then_signalled}
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(drive_run(store, run_id, handlers, NullObserver(), actor="ann"))
    run = store.get_run(run_id)
    assert run.state is State.SUPERSEDED and run.error == "superseded by run 10"
    assert [s.state for s in run.stages] == [State.SUCCEEDED, State.SUPERSEDED]
    store.close()
