"""The state machine: only the edges it has, and final states are final."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slipway.errors import StateError
from slipway.model.states import FINAL, State, can_transition, transition


def test_a_run_goes_pending_running_waiting_running_succeeded() -> None:
    state = State.PENDING
    for nxt in (State.RUNNING, State.WAITING, State.RUNNING, State.SUCCEEDED):
        state = transition(state, nxt)
    assert state is State.SUCCEEDED


def test_an_approved_gate_goes_from_waiting_to_succeeded() -> None:
    assert transition(State.WAITING, State.SUCCEEDED) is State.SUCCEEDED


@pytest.mark.parametrize("final", sorted(FINAL))
def test_final_states_have_no_way_out(final: State) -> None:
    for other in State:
        assert not can_transition(final, other)


def test_illegal_edge_names_both_ends_and_what_is_allowed() -> None:
    with pytest.raises(StateError) as err:
        transition(State.PENDING, State.SUCCEEDED, what="run 7")
    assert "run 7 cannot go from pending to succeeded" in str(err.value)
    assert "running" in str(err.value)


@given(st.lists(st.sampled_from(list(State)), max_size=30))
def test_random_walks_never_leave_a_final_state(steps: list[State]) -> None:
    state = State.PENDING
    for nxt in steps:
        if can_transition(state, nxt):
            state = transition(state, nxt)
        else:
            with pytest.raises(StateError):
                transition(state, nxt)
    if state in FINAL:
        assert all(not can_transition(state, s) for s in State)


def test_only_a_waiting_or_queued_run_can_be_superseded_and_that_is_final() -> None:
    assert transition(State.WAITING, State.SUPERSEDED) is State.SUPERSEDED
    assert transition(State.QUEUED, State.SUPERSEDED) is State.SUPERSEDED
    assert State.SUPERSEDED.is_final
    for other in State:
        if other not in (State.WAITING, State.QUEUED):
            assert not can_transition(other, State.SUPERSEDED)


def test_a_run_queues_for_a_busy_environment_and_runs_again_on_its_turn() -> None:
    state = State.PENDING
    for nxt in (State.RUNNING, State.QUEUED, State.RUNNING, State.QUEUED, State.RUNNING, State.SUCCEEDED):
        state = transition(state, nxt)
    assert state is State.SUCCEEDED
    assert not State.QUEUED.is_final and not State.QUEUED.has_ended


def test_a_queued_run_leaves_only_to_run_be_superseded_or_be_found_interrupted() -> None:
    allowed = {s for s in State if can_transition(State.QUEUED, s)}
    assert allowed == {State.RUNNING, State.SUPERSEDED, State.INTERRUPTED}
    # a signal or the queue's timeout goes back to running first: cancelled and failed are recorded from there
    for end in (State.CANCELLED, State.FAILED, State.SUCCEEDED, State.WAITING):
        with pytest.raises(StateError, match="cannot go from queued to"):
            transition(State.QUEUED, end)
    for start in State:
        assert can_transition(start, State.QUEUED) is (start is State.RUNNING)
