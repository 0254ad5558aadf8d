"""The JSON API of a real ``slipway serve``, through httpx: every endpoint, its roles and its errors.

Errors are one JSON shape (``{"error": {"type", "message", "hint", "exit_code"}}``) with the status of
their class: 401 no or bad credentials, 403 a role missing, 404 no such project/run/environment, 409 the
state forbids it, 422 bad input.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import httpx
import pytest

from slipway.model.states import RunKind, StageKind
from slipway.store.repository import Store
from tests.server.conftest import PASSWORD, Server

pytestmark = pytest.mark.timeout(300)
P = "/api/projects/webapp"


def error_of(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The response's error, after checking its status and type."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == kind, error
    assert error["message"]
    return error


def start_and_wait(server: Server, user: str = "deployer") -> dict[str, Any]:
    """A pipeline run of HEAD started through the API, once it waits at approve-production."""
    with server.client(user) as c:
        response = c.post(f"{P}/runs", json={})
    assert response.status_code == 202, response.text
    return server.wait_run("viewer", response.json()["id"], "waiting", "failed", "succeeded")


def test_the_openapi_document_lists_every_endpoint(shared_server: Server) -> None:
    paths = httpx.get(f"{shared_server.url}/api/openapi.json").json()["paths"]
    for path in (
        "/api/me", "/api/projects", f"{P}/status", f"{P}/runs", f"{P}/runs/{{run_id}}", f"{P}/runs/{{run_id}}/logs",
        f"{P}/runs/{{run_id}}/approve", f"{P}/runs/{{run_id}}/reject", f"{P}/runs/{{run_id}}/resume",
        f"{P}/runs/{{run_id}}/events", f"{P}/promotions", f"{P}/environments", f"{P}/deployments",
        f"{P}/environments/{{environment}}/rollback", f"{P}/environments/{{environment}}/unlock", f"{P}/audit",
        f"{P}/breakers", f"{P}/breakers/{{name}}/reset", "/api/approvals", "/api/session",
    ):  # fmt: skip
        assert path.replace("webapp", "{project}") in paths, path
    assert httpx.get(f"{shared_server.url}/api/docs").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer slw_not-a-token"}, {"Authorization": "Basic YWRtaW46eA=="}, {"Authorization": "Bearer"}],
)
def test_without_valid_credentials_every_endpoint_is_401(shared_server: Server, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=shared_server.url, headers=headers) as c:
        for method, path in [("GET", "/api/me"), ("GET", f"{P}/runs"), ("POST", f"{P}/runs"), ("GET", "/metrics")]:
            response = c.request(method, path, json={})
            error = error_of(response, 401, "NotAuthenticated")
            assert response.headers["www-authenticate"] == "Bearer"
            assert error["exit_code"] == 9


def test_me_names_the_user_and_its_roles(shared_server: Server) -> None:
    with shared_server.client("approver") as c:
        me = c.get("/api/me").json()
    assert me == {
        "name": "approver",
        "grants": [{"role": "approver", "environments": "production"}, {"role": "viewer", "environments": "*"}],
    }


def test_unknown_project_run_and_environment_are_404(shared_server: Server) -> None:
    with shared_server.client("admin") as c:
        error_of(c.get("/api/projects/nope/runs"), 404, "NotFound")
        error_of(c.get(f"{P}/runs/999999"), 404, "NotFound")
        error_of(c.get(f"{P}/runs/999999/logs"), 404, "NotFound")
        error_of(c.get(f"{P}/runs/999999/events"), 404, "NotFound")
        error_of(c.post(f"{P}/runs/999999/approve", json={"reason": "x"}), 404, "NotFound")
        error_of(c.get(f"{P}/deployments", params={"environment": "moon"}), 404, "NotFound")
        error = error_of(c.post(f"{P}/environments/moon/rollback", json={"reason": "x"}), 404, "NotFound")
        assert "production" in error["hint"]
        error_of(c.post(f"{P}/environments/moon/unlock", json={}), 404, "NotFound")
        error_of(c.post(f"{P}/promotions", json={"digest": "sha256:" + "0" * 64, "environment": "moon"}), 404, "NotFound")


def test_bad_input_is_422_naming_the_field(shared_server: Server) -> None:
    with shared_server.client("admin") as c:
        error = error_of(c.post(f"{P}/runs/1/approve", json={"reason": ""}), 422, "RequestError")
        assert "reason" in error["message"]
        error_of(c.post(f"{P}/runs/1/approve", json={}), 422, "RequestError")
        error_of(c.post(f"{P}/runs/1/approve", content=b"{not json", headers={"content-type": "application/json"}), 422, "RequestError")
        error = error_of(c.get(f"{P}/runs", params={"limit": 0}), 422, "RequestError")
        assert "limit" in error["message"]
        error_of(c.get(f"{P}/runs", params={"state": "sleeping"}), 422, "RequestError")
        error_of(c.get(f"{P}/runs/abc"), 422, "RequestError")
        error = error_of(c.post(f"{P}/runs", json={"commit": "no-such-commit"}), 422, "ConfigError")
        assert "no-such-commit" in error["message"]
        error_of(c.post(f"{P}/environments/production/rollback", json={}), 422, "RequestError")


def test_a_viewer_may_read_but_not_act(shared_server: Server) -> None:
    with shared_server.client("viewer") as c:
        assert c.get(f"{P}/status").status_code == 200
        assert c.get(f"{P}/environments").status_code == 200
        error = error_of(c.post(f"{P}/runs", json={}), 403, "AccessDenied")
        assert "viewer may not deploy on dev" in error["message"]
        assert "slipway users grant" in error["hint"]
        error_of(c.post(f"{P}/environments/staging/unlock", json={}), 403, "AccessDenied")
        error_of(c.post(f"{P}/breakers/x/reset"), 403, "AccessDenied")
        error_of(c.post(f"{P}/promotions", json={"digest": "sha256:" + "0" * 64, "environment": "dev"}), 403, "AccessDenied")
    with shared_server.client("deployer") as c:  # a deployer may unlock, but only an admin may force it
        assert c.post(f"{P}/environments/staging/unlock", json={}).json() == {"environment": "staging", "removed": False}
        error_of(c.post(f"{P}/environments/staging/unlock", json={"force": True}), 403, "AccessDenied")


def test_the_approver_role_decides_and_nothing_is_recorded_for_others(shared_server: Server) -> None:
    run = start_and_wait(shared_server)
    assert run["state"] == "waiting" and run["triggered_by"] == "deployer"
    with shared_server.client("viewer") as viewer, shared_server.client("approver") as approver:
        waiting = [a for a in viewer.get("/api/approvals").json()["items"] if a["run"]["id"] == run["id"]]
        mine = [a for a in approver.get("/api/approvals").json()["items"] if a["run"]["id"] == run["id"]]
    assert waiting and waiting[0]["environments"] == ["production"] and waiting[0]["you_may_approve"] is False
    assert mine[0]["you_may_approve"] is True

    for user in ("viewer", "deployer"):
        with shared_server.client(user) as c:
            error = error_of(c.post(f"{P}/runs/{run['id']}/approve", json={"reason": "me"}), 403, "AccessDenied")
            assert error["message"] == f"{user} may not approve on production"
            error_of(c.post(f"{P}/runs/{run['id']}/reject", json={"reason": "me"}), 403, "AccessDenied")
    with shared_server.client("viewer") as c:
        still = c.get(f"{P}/runs/{run['id']}").json()
    assert still["state"] == "waiting" and still["approvals"] == []

    with shared_server.client("approver") as c:
        response = c.post(f"{P}/runs/{run['id']}/reject", json={"reason": "not on a Friday"})
    assert response.status_code == 200, response.text
    rejected = response.json()
    assert rejected["state"] == "failed"
    assert rejected["approvals"][0] | {"at": 0} == {
        "stage": "approve-production", "decision": "rejected", "by": "approver", "reason": "not on a Friday", "at": 0,
    }  # fmt: skip
    with shared_server.client("approver") as c:  # a decided run cannot be decided again
        error = error_of(c.post(f"{P}/runs/{run['id']}/approve", json={"reason": "changed my mind"}), 409, "StateError")
    assert "not waiting" in error["message"]


def test_logs_and_events_of_a_run(shared_server: Server) -> None:
    run = start_and_wait(shared_server)
    with shared_server.client("viewer") as c:
        logs = c.get(f"{P}/runs/{run['id']}/logs").json()
        tested = c.get(f"{P}/runs/{run['id']}/logs", params={"stage": "unit-tests"}).json()
        with c.stream("GET", f"{P}/runs/{run['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = [line for line in stream.iter_lines() if line.startswith("event: ")]
    stages = {s["stage"] for s in logs["steps"]}
    assert {"unit-tests", "deploy-dev", "deploy-staging"} <= stages  # build: reused when the commit was built before
    assert all(s["stage"] == "unit-tests" for s in tested["steps"]) and tested["steps"]
    activate = [s for s in logs["steps"] if s["stage"] == "deploy-dev" and "restart.sh" in s["command"]]
    assert activate and activate[0]["exit_code"] == 0
    # this server drove the run: its feed from the first stage on, the run's state, and the end (it waits)
    assert events[0] == "event: stage_started" and "event: output" in events
    assert "event: run" in events and events[-1] == "event: end"


def test_pagination_slices_on_the_server(project_store: tuple[Server, Store]) -> None:
    server, store = project_store
    for i in range(25):
        store.create_run(
            project="webapp", kind=RunKind.PIPELINE, commit=f"{i:040x}", triggered_by="seed", config_text="",
            config_path="", stages=[("build", StageKind.BUILD, None)],
        )  # fmt: skip
    with server.client("viewer") as c:
        first = c.get(f"{P}/runs", params={"limit": 10}).json()
        last = c.get(f"{P}/runs", params={"limit": 10, "offset": 20}).json()
        pending = c.get(f"{P}/runs", params={"state": "pending", "limit": 200}).json()
        audit = c.get(f"{P}/audit", params={"limit": 3, "offset": 1}).json()
    assert first["total"] == 25 and len(first["items"]) == 10 and first["items"][0]["id"] == 25
    assert [r["id"] for r in last["items"]] == [5, 4, 3, 2, 1] and last["offset"] == 20
    assert pending["total"] == 25 == len(pending["items"])
    assert len(audit["items"]) == 3 and audit["total"] >= 4


@pytest.fixture
def project_store(server: Server) -> Any:
    store = Store(f"sqlite:///{server.project.root / '.slipway/state.db'}")
    try:
        yield server, store
    finally:
        store.close()


def test_approve_deploy_promote_rollback_through_the_api_record_the_user(server: Server) -> None:
    first = start_and_wait(server)
    with server.client("approver") as c:
        response = c.post(f"{P}/runs/{first['id']}/approve", json={"reason": "release 1"})
    assert response.status_code == 202 and response.json()["state"] == "running"
    assert server.wait_run("viewer", first["id"], "succeeded", "failed")["state"] == "succeeded"
    server.project.edit("app/store.py", "oldest first", "oldest first (v2)")
    server.project.commit("webapp: second release")
    second = start_and_wait(server)
    with server.client("approver") as c:
        c.post(f"{P}/runs/{second['id']}/approve", json={"reason": "release 2"}).raise_for_status()
    assert server.wait_run("viewer", second["id"], "succeeded", "failed")["state"] == "succeeded"

    with server.client("deployer") as c:  # promote run 1's artifact to dev: it passed everything before dev
        promoted = c.post(f"{P}/promotions", json={"digest": first["artifact_digest"], "environment": "dev", "allow_older_reason": "back to 1 in dev"})
        assert promoted.status_code == 202, promoted.text
        assert server.wait_run("viewer", promoted.json()["id"], "succeeded", "failed")["state"] == "succeeded"
        rolled = c.post(f"{P}/environments/production/rollback", json={"reason": "release 2 is slow"})
        assert rolled.status_code == 202, rolled.text
    rollback = server.wait_run("viewer", rolled.json()["id"], "succeeded", "failed")
    assert rollback["state"] == "succeeded" and rollback["kind"] == "rollback" and rollback["triggered_by"] == "deployer"
    with server.client("viewer") as c:
        env = {e["name"]: e for e in c.get(f"{P}/environments").json()}
        newest = c.get(f"{P}/deployments", params={"environment": "production", "limit": 1}).json()
        audit = c.get(f"{P}/audit", params={"limit": 200}).json()["items"]
    assert env["production"]["artifact_digest"] == first["artifact_digest"]
    assert env["dev"]["artifact_digest"] == first["artifact_digest"]
    assert newest["total"] == 3
    latest = newest["items"][0]
    assert (latest["kind"], latest["deployed_by"], latest["reason"]) == ("rollback", "deployer", "release 2 is slow")
    approvals = [a for a in audit if a["action"] == "approval.approved"]
    assert {a["actor"] for a in approvals} == {"approver"}
    assert {json.loads(a["detail"])["reason"] for a in approvals} == {"release 1", "release 2"}


def test_nothing_to_roll_back_to_and_a_run_that_cannot_resume_are_409(shared_server: Server) -> None:
    run = start_and_wait(shared_server)  # its own run: the module's tests may run on several workers
    with shared_server.client("admin") as c:
        error = error_of(c.post(f"{P}/environments/production/rollback", json={"reason": "try"}), 409, "GateError")
        assert error["exit_code"] == 9
        error = error_of(c.post(f"{P}/runs/{run['id']}/resume"), 409, "StateError")
    assert "only an interrupted or cancelled run can be resumed" in error["message"]


def test_a_cookie_session_needs_its_csrf_token_to_act(shared_server: Server) -> None:
    with httpx.Client(base_url=shared_server.url) as c:
        error_of(c.post("/api/session", json={"user": "deployer", "password": "wrong password!"}), 401, "NotAuthenticated")
        error_of(c.post("/api/session", json={"user": "nobody", "password": PASSWORD}), 401, "NotAuthenticated")
        signed = c.post("/api/session", json={"user": "deployer", "password": PASSWORD})
        assert signed.status_code == 200
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        csrf = signed.json()["csrf_token"]
        assert c.get("/api/me").json()["name"] == "deployer"  # reading needs no token
        body = {"force": False}
        error_of(c.post(f"{P}/environments/dev/unlock", json=body), 403, "AccessDenied")
        error_of(c.post(f"{P}/environments/dev/unlock", json=body, headers={"X-CSRF-Token": "x" + csrf}), 403, "AccessDenied")
        cross = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        error_of(c.post(f"{P}/environments/dev/unlock", json=body, headers=cross), 403, "AccessDenied")
        ok = c.post(f"{P}/environments/dev/unlock", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text
        assert c.request("DELETE", "/api/session", headers={"X-CSRF-Token": csrf}).status_code == 200
        error_of(c.get("/api/me"), 401, "NotAuthenticated")


def test_metrics_count_runs_by_state_and_need_a_token(shared_server: Server) -> None:
    run = start_and_wait(shared_server)
    assert httpx.get(f"{shared_server.url}/metrics").status_code == 401
    with shared_server.client("viewer") as c:
        text = c.get("/metrics").text
        waiting = c.get("/api/approvals").json()["total"]
    assert run["state"] == "waiting"
    assert f'slipway_approvals_waiting{{project="webapp"}} {float(waiting)}' in text
    assert f'slipway_runs{{project="webapp",state="waiting"}} {float(waiting)}' in text
    assert 'slipway_deployments{environment="staging",project="webapp",state="succeeded"}' in text
    assert "slipway_run_duration_seconds" in text


def test_sigterm_cancels_the_runs_the_server_drives_and_reverts_them(server: Server) -> None:
    """The server's runs are cancelled like a CLI run on SIGTERM: hosts back, run cancelled, lock released."""
    first = start_and_wait(server)
    with server.client("approver") as c:
        c.post(f"{P}/runs/{first['id']}/approve", json={"reason": "release 1"}).raise_for_status()
    server.wait_run("viewer", first["id"], "succeeded")
    # slow only for the new release in production: putting the old one back must not wait for it
    hook = (
        "      - if [ {{ environment.name }} = production ] && [ -e {{ release.dir }}/app/slow ];"
        " then touch {{ paths.shared }}/activating; sleep 60; fi\n"
    )
    server.project.edit("slipway.yml", "    activate:\n", "    activate:\n" + hook)
    (server.project.root / "app/slow").write_text("")
    server.project.commit("webapp: a slow production activate")
    run = start_and_wait(server)
    with server.client("approver") as c:
        c.post(f"{P}/runs/{run['id']}/approve", json={"reason": "slow one"}).raise_for_status()
    marker = server.project.root / ".slipway/targets/production/shared/activating"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.1)
    # uvicorn shuts down gracefully, then re-raises the signal: the exit status is SIGTERM's, as systemd expects
    assert server.stop(signal.SIGTERM) == -signal.SIGTERM
    assert "Application shutdown complete" in server.log.read_text()
    status = server.project.status()
    assert status["production"]["artifact_digest"] == first["artifact_digest"]  # reverted
    history = {r["id"]: r for r in server.project.json("history")}
    assert history[run["id"]]["state"] == "cancelled"
    assert "not locked" in server.project.slipway("unlock", "production").stdout


def test_projects_and_breakers(shared_server: Server) -> None:
    with shared_server.client("viewer") as c:
        projects = c.get("/api/projects").json()
        breakers = c.get(f"{P}/breakers")
    assert projects == [
        {
            "name": "webapp",
            "environments": ["dev", "staging", "production"],
            "stages": [
                "build", "unit-tests", "deploy-dev", "acceptance-dev", "deploy-staging", "acceptance-staging",
                "approve-production", "deploy-production", "smoke-production",
            ],
        }
    ]  # fmt: skip
    assert breakers.status_code == 200 and breakers.json() == []  # the example declares no dependencies
    with shared_server.client("admin") as c:
        error = error_of(c.post(f"{P}/breakers/payments/reset"), 422, "ConfigError")
    assert "payments" in error["message"]
