"""The fault matrix, store column: the store's PostgreSQL killed (``pg_ctl -m immediate``) while a host's
activate hook runs, the store replaced between two runs, and the lock of a live deployment.

| fault                                   | expected                                                          |
|-----------------------------------------|-------------------------------------------------------------------|
| store killed, the activate hook fails   | exit != 0, every host put back all the same (no store needed); once |
|                                         | the store answers, the journal is replayed: status, history true  |
| store killed, the deployment goes on    | every host on one release; exit 0 only if that is the new one;    |
|                                         | once the store answers, status and history say so                 |
| store deleted or switched to PostgreSQL | the next run deploys exactly the new commit's files               |
| ``slipway unlock`` while a run holds it | refused (the holder is alive); the run finishes and releases it   |
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.faults.support import (
    ENV,
    Case,
    assert_deploys_commit,
    assert_hosts_complete,
    assert_no_dead_lock,
    assert_store_matches_hosts,
    deployment_state,
    end_session,
    finish,
    wait_for,
)
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def store_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of this module's own: its cases kill it, which no other test may see."""
    with PostgresServer() as server:
        yield server


def fresh_database(server: PostgresServer) -> str:
    return server.create_database(f"faults_{uuid.uuid4().hex[:12]}")


@pytest.mark.parametrize("hook", ["fails", "succeeds"])
def test_the_store_killed_mid_deployment_never_leaves_hosts_or_records_wrong(
    new_case: Callable[..., Case], store_server: PostgresServer, hook: str
) -> None:
    case = new_case(database_url=fresh_database(store_server))
    case.commit("a")
    case.ok("run")
    release_a = case.current(0)
    case.commit("b")
    trap = case.trap("activate", fail=hook == "fails")
    proc = case.start("run")
    try:
        wait_for(lambda: trap.with_name("activate.reached").exists() or proc.poll() is not None, "the activate trap")
        assert proc.poll() is None, f"slipway ended before h1's activate hook: {proc.communicate()}"
        store_server.crash()
        case.release_trap(trap)
        code, out, err, _ = finish(proc)
    finally:
        end_session(proc)
        if not _answers(store_server):
            store_server.restart()
    on_hosts = case.currents()
    assert len(set(on_hosts)) == 1, f"the hosts were left on different releases: {on_hosts}\n{err}"
    assert "Traceback" not in err, err
    new = on_hosts[0] != release_a
    if hook == "fails":
        assert not new and code != 0, f"exit {code}; the hosts run {on_hosts}\n{out}\n{err}"
    assert (code == 0) is new, f"exit {code} while the hosts run {'the new' if new else 'the old'} release\n{err}"
    assert_hosts_complete(case, set(on_hosts))

    # the store answers again: the next command replays what could not be written
    expected = "succeeded" if new else "failed"
    status = assert_store_matches_hosts(case, {2: expected})
    assert deployment_state(case, 2) == expected
    assert status["release"] == on_hosts[0]
    assert_no_dead_lock(case)

    case.commit("c")
    case.ok("run")
    assert_deploys_commit(case, "c")
    assert_store_matches_hosts(case, history=False)
    newest = case.query("SELECT state FROM runs ORDER BY id DESC LIMIT 1")  # PostgreSQL's ids skip after a crash
    assert newest[0][0] == "succeeded"
    assert case.locks() == []


def _answers(server: PostgresServer) -> bool:
    import psycopg

    try:
        with psycopg.connect(server.conninfo(), connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@pytest.mark.parametrize("replacement", ["sqlite-deleted", "postgresql"])
def test_a_replaced_store_never_deploys_an_older_commit(
    new_case: Callable[..., Case], store_server: PostgresServer, replacement: str
) -> None:
    case = new_case()
    case.commit("a")
    case.ok("run")
    if replacement == "postgresql":
        case.database_url = case.env["SLIPWAY_DATABASE_URL"] = fresh_database(store_server)
    else:
        for file in (case.root / ".slipway").glob("state.db*"):
            file.unlink()
    case.commit("b")
    case.ok("run")  # run ids start again at 1 in the new store
    assert_deploys_commit(case, "b")
    assert_store_matches_hosts(case, {1: "succeeded"})


def test_unlock_refuses_the_lock_of_a_live_deployment(new_case: Callable[..., Case]) -> None:
    case = new_case()
    case.commit("a")
    trap = case.trap("configure")
    proc = case.start("run")
    try:
        wait_for(lambda: trap.with_name("configure.reached").exists() or proc.poll() is not None, "the configure trap")
        assert proc.poll() is None, f"slipway ended before the configure phase: {proc.communicate()}"
        held = dict(case.locks())
        assert f"pid {proc.pid} " in held[f"environment {ENV}"], held
        refused = case.slipway("unlock", ENV)
        assert refused.returncode != 0, f"unlock removed the lock of a live process:\n{refused.stdout}"
        assert "--force" in refused.stdout + refused.stderr, refused.stderr
        assert dict(case.locks()) == held
        case.release_trap(trap)
        code, _, err, _ = finish(proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        end_session(proc)
    assert code == 0, err
    assert case.locks() == []
    assert_deploys_commit(case, "a")
