"""The state store, on SQLite and on a real PostgreSQL server started by the test setup."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from slipway.errors import LockHeld, StateError, StoreError
from slipway.model.states import Decision, DeploymentKind, RunKind, StageKind, State
from slipway.store.repository import HEAD_REVISION, Store, alembic_config


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = Store(url)
    request.addfinalizer(s.close)
    return s


def new_run(store: Store) -> int:
    return store.create_run(
        project="p",
        kind=RunKind.PIPELINE,
        commit="c" * 40,
        triggered_by="ann",
        config_text="name: p",
        config_path="/p/slipway.yml",
        stages=[
            ("build", StageKind.BUILD, None),
            ("gate", StageKind.APPROVAL, None),
            ("deploy-prod", StageKind.DEPLOY, "prod"),
        ],
    )


def test_schema_upgrade_is_idempotent(store: Store) -> None:
    store.upgrade()
    store.upgrade()
    assert store.list_runs() == []
    assert store.revision() == HEAD_REVISION


def test_head_revision_constant_matches_alembic() -> None:
    from alembic.script import ScriptDirectory

    cfg = alembic_config(create_engine("sqlite://"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_run_lifecycle_and_stage_timings(store: Store) -> None:
    run_id = new_run(store)
    store.set_run_state(run_id, State.RUNNING)
    build = store.get_run(run_id).stages[0]
    store.set_stage_state(build.id, State.RUNNING)
    step = store.start_step(build.id, name="build: make", host="build", command="make")
    store.finish_step(step, State.SUCCEEDED, exit_code=0, log="ok")
    store.set_stage_state(build.id, State.SUCCEEDED)
    store.set_run_artifact(run_id, "sha256:" + "1" * 64)
    run = store.get_run(run_id)
    assert run.state is State.RUNNING and run.artifact_digest == "sha256:" + "1" * 64
    assert run.stages[0].started_at is not None and run.stages[0].finished_at is not None
    [(stage_name, recorded)] = store.steps(run_id)
    assert stage_name == "build" and recorded.log == "ok" and recorded.duration is not None


def test_a_step_named_by_a_long_command_is_recorded_with_the_command_whole(store: Store) -> None:
    # A step is named "<phase>: <command>"; PostgreSQL refused names over 200 characters (exit 12 mid-run).
    run_id = new_run(store)
    build = store.get_run(run_id).stages[0]
    command = "python3 -c 'print(1)' && " + "x" * 400
    step = store.start_step(build.id, name=f"build: {command}", host="build", command=command)
    store.finish_step(step, State.SUCCEEDED, exit_code=0, log="ok")
    [(_, recorded)] = store.steps(run_id)
    assert recorded.name.startswith("build: python3 -c 'print(1)' && xxx") and recorded.name.endswith("…")
    assert len(recorded.name) <= 200 and recorded.command == command


def test_illegal_transitions_are_refused_and_nothing_changes(store: Store) -> None:
    run_id = new_run(store)
    with pytest.raises(StateError):
        store.set_run_state(run_id, State.SUCCEEDED)
    assert store.get_run(run_id).state is State.PENDING


def test_an_artifact_is_never_swapped(store: Store) -> None:
    run_id = new_run(store)
    store.set_run_artifact(run_id, "sha256:" + "1" * 64)
    with pytest.raises(StateError, match="never swapped"):
        store.set_run_artifact(run_id, "sha256:" + "2" * 64)


def test_what_runs_where(store: Store) -> None:
    run_id = new_run(store)
    dep = store.start_deployment(
        environment="prod",
        kind=DeploymentKind.DEPLOY,
        run_id=run_id,
        artifact_digest="sha256:" + "1" * 64,
        release_id="r1",
        deployed_by="ann",
    )
    for host in ("web-1", "web-2"):
        store.set_host_release(
            environment="prod",
            host=host,
            release_id="r1",
            artifact_digest="sha256:" + "1" * 64,
            commit="c" * 40,
            deployment_id=dep,
            run_id=run_id,
        )
        store.record_host(
            dep, host=host, from_release=None, to_release="r1", state=State.SUCCEEDED, error=None, duration=0.5
        )
    store.finish_deployment(dep, State.SUCCEEDED)
    store.set_host_release(
        environment="prod",
        host="web-2",
        release_id="r0",
        artifact_digest="sha256:" + "0" * 64,
        commit="b" * 40,
        deployment_id=dep,
        run_id=None,
    )
    rows = {h.host: h.release_id for h in store.host_releases("prod")}
    assert rows == {"web-1": "r1", "web-2": "r0"}
    [d] = store.deployments("prod")
    assert d.state is State.SUCCEEDED and {h.host for h in d.hosts} == {"web-1", "web-2"}


def test_approvals_and_the_audit_log_keep_who_and_why(store: Store) -> None:
    run_id = new_run(store)
    store.add_approval(run_id=run_id, stage_name="gate", decision=Decision.APPROVED, by="bob", reason="tested")
    [approval] = store.approvals(run_id)
    assert (approval.by, approval.reason, approval.decision) == ("bob", "tested", Decision.APPROVED)
    actions = [a.action for a in store.audit_log()]
    assert "approval.approved" in actions and "run.create.pipeline" in actions


def test_lock_names_its_holder_and_expires(store: Store) -> None:
    now = [1000.0]
    clocked = Store(store.url, clock=lambda: now[0])
    try:
        clocked.acquire_lock("environment prod", "ann (run 1)", ttl=60)
        with pytest.raises(LockHeld, match=r"ann \(run 1\)"):
            clocked.acquire_lock("environment prod", "bob (run 2)", ttl=60)
        now[0] += 61
        clocked.acquire_lock("environment prod", "bob (run 2)", ttl=60)  # expired: taken over
        assert not clocked.release_lock("environment prod", "ann (run 1)")
        assert clocked.release_lock("environment prod", "bob (run 2)")
    finally:
        clocked.close()


def test_concurrent_lock_attempts_let_exactly_one_win(store: Store) -> None:
    winners: list[str] = []
    errors: list[Exception] = []

    def attempt(name: str) -> None:
        other = Store(store.url)
        try:
            other.acquire_lock("environment prod", name, ttl=60)
            winners.append(name)
        except LockHeld as exc:
            errors.append(exc)
        finally:
            other.close()

    threads = [threading.Thread(target=attempt, args=(f"p{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(winners) == 1 and len(errors) == 5


def test_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open the state store") as err:
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(err.value)
