"""The store's side of a busy environment's queue (services/queue.py), on SQLite and on PostgreSQL: a run
joins and leaves the queue with its deploy stage in one transaction, a queued run can be superseded or found
interrupted, and a run whose turn comes while a newer run supersedes it ends exactly one way."""

from __future__ import annotations

import json
import threading

import pytest

from slipway.errors import StateError
from slipway.model.states import RunKind, StageKind, State
from slipway.store.repository import Store
from tests.core.test_store import store as store  # the fixture: SQLite and PostgreSQL

pytestmark = pytest.mark.timeout(120)


def deploying_run(store: Store, commit: str = "c") -> tuple[int, int]:
    """A pipeline run at its running deploy stage: (run id, deploy stage id)."""
    run_id = store.create_run(
        project="p",
        kind=RunKind.PIPELINE,
        commit=commit * 40,
        triggered_by="ann",
        config_text="name: p",
        config_path="/p/slipway.yml",
        stages=[("build", StageKind.BUILD, None), ("deploy-prod", StageKind.DEPLOY, "prod"), ("after", StageKind.TEST, None)],
    )
    store.set_run_state(run_id, State.RUNNING)
    build, deploy, _ = store.get_run(run_id).stages
    store.set_stage_state(build.id, State.RUNNING)
    store.set_stage_state(build.id, State.SUCCEEDED)
    store.set_stage_state(deploy.id, State.RUNNING)
    return run_id, deploy.id


def states(store: Store, run_id: int) -> tuple[str, list[str]]:
    run = store.get_run(run_id)
    return run.state.value, [s.state.value for s in run.stages]


def test_a_run_joins_and_leaves_the_queue_with_its_stage_and_the_queue_says_since_when(store: Store) -> None:
    run_id, stage_id = deploying_run(store)
    assert store.join_queue(run_id, stage_id, environment="prod", behind="run 1 (queued)", actor="ann")
    assert states(store, run_id) == ("queued", ["succeeded", "queued", "pending"])
    [queued] = store.queued_runs("p")
    assert (queued.run_id, queued.environment, queued.stage, queued.kind) == (run_id, "prod", "deploy-prod", RunKind.PIPELINE)
    assert queued.since is not None and store.queued_runs("other") == []
    entry = next(a for a in store.audit_log() if a.action == "run.queued")
    assert json.loads(entry.detail) == {"environment": "prod", "behind": "run 1 (queued)"}
    assert not store.join_queue(run_id, stage_id, environment="prod", behind="-", actor="ann")  # already queued
    assert store.leave_queue(run_id, stage_id, actor="ann")
    assert states(store, run_id) == ("running", ["succeeded", "running", "pending"])
    assert store.queued_runs("p") == [] and not store.leave_queue(run_id, stage_id, actor="ann")


def test_a_queued_run_is_superseded_whole_and_cannot_take_its_turn_after(store: Store) -> None:
    run_id, stage_id = deploying_run(store)
    store.join_queue(run_id, stage_id, environment="prod", behind="x", actor="ann")
    assert store.supersede_run(run_id, reason="superseded by run 9: newer", actor="bob")
    assert states(store, run_id) == ("superseded", ["succeeded", "superseded", "skipped"])
    assert store.get_run(run_id).error == "superseded by run 9: newer"
    assert not store.leave_queue(run_id, stage_id, actor="ann")
    assert not store.supersede_run(run_id, reason="again", actor="bob")  # once
    assert [a.action for a in store.audit_log()].count("run.superseded") == 1


def test_a_running_run_is_not_superseded(store: Store) -> None:
    run_id, _ = deploying_run(store)
    assert not store.supersede_run(run_id, reason="no", actor="bob")
    assert states(store, run_id) == ("running", ["succeeded", "running", "pending"])


def test_a_stage_that_is_not_running_cannot_join_a_queue(store: Store) -> None:
    run_id, _ = deploying_run(store)
    build = store.get_run(run_id).stages[0]
    with pytest.raises(StateError, match="cannot join a queue"):
        store.join_queue(run_id, build.id, environment="prod", behind="x", actor="ann")
    assert states(store, run_id) == ("running", ["succeeded", "running", "pending"])  # rolled back whole


def test_a_queued_run_whose_process_died_is_recorded_interrupted(store: Store) -> None:
    run_id, stage_id = deploying_run(store)
    store.join_queue(run_id, stage_id, environment="prod", behind="x", actor="ann")
    assert store.interrupt_run(run_id, reason="interrupted: the process driving it died")
    assert states(store, run_id) == ("interrupted", ["succeeded", "interrupted", "pending"])


def race(url: str, run_id: int, stage_id: int) -> dict[str, bool]:
    """Its turn (leave_queue) and a newer run's supersede_run on one queued run, at once, from two connections."""
    won: dict[str, bool] = {}
    barrier = threading.Barrier(2, timeout=30)

    def attempt(what: str) -> None:
        own = Store(url)
        try:
            barrier.wait()
            if what == "turn":
                won[what] = own.leave_queue(run_id, stage_id, actor="ann")
            else:
                won[what] = own.supersede_run(run_id, reason="superseded by a newer run", actor="bob")
        finally:
            own.close()

    threads = [threading.Thread(target=attempt, args=(what,)) for what in ("turn", "supersede")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return won


def test_a_turn_and_a_supersede_racing_on_one_queued_run_end_exactly_one_way(store: Store) -> None:
    for _ in range(8):
        run_id, stage_id = deploying_run(store)
        store.join_queue(run_id, stage_id, environment="prod", behind="x", actor="ann")
        won = race(store.url, run_id, stage_id)
        assert sorted(won.values()) == [False, True], won
        expected = ("running", "running") if won["turn"] else ("superseded", "superseded")
        run_state, stage_states = states(store, run_id)
        assert (run_state, stage_states[1]) == expected


def test_the_queue_lists_runs_oldest_first_whenever_they_joined(store: Store) -> None:
    first, first_stage = deploying_run(store, "a")
    second, second_stage = deploying_run(store, "b")
    store.join_queue(second, second_stage, environment="prod", behind="x", actor="ann")
    store.join_queue(first, first_stage, environment="prod", behind="x", actor="ann")
    assert [q.run_id for q in store.queued_runs("p")] == [first, second]  # oldest first, not by joining
    assert [q.commit for q in store.queued_runs("p")] == ["a" * 40, "b" * 40]
