"""Deploy freezes through a real ``slipway serve``: an override needs the admin role and is audited as its user."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from slipway.services.app import open_app
from tests.e2e.conftest import Project
from tests.e2e.test_freeze import freeze_staging
from tests.server.conftest import Server, add_users, start_server, stop_server
from tests.server.test_api import P, error_of

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def frozen(project: Project) -> Iterator[Server]:
    """A server of a project whose staging is frozen from yesterday to the day after tomorrow (UTC)."""
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=1)).strftime("%Y-%m-%d"), (now + timedelta(days=2)).strftime("%Y-%m-%d")
    freeze_staging(project, f'    freezes:\n      - {{name: year-end, start: "{start}", end: "{end}"}}\n')
    srv = start_server(project, add_users(project))
    try:
        yield srv
    finally:
        stop_server(srv)


def test_an_override_needs_the_admin_role_and_is_audited_as_its_user(frozen: Server) -> None:
    with frozen.client("deployer") as c:
        error = error_of(c.post(f"{P}/runs", json={"override_freeze": "hotfix"}), 403, "AccessDenied")
        assert "deployer may not admin on dev" in error["message"]
        assert c.get(f"{P}/runs").json()["items"] == [], "a refused override started a run"
        run = c.post(f"{P}/runs", json={}).json()
    failed = frozen.wait_run("deployer", run["id"], "failed", "waiting", "succeeded")
    assert failed["state"] == "failed" and "freeze year-end" in failed["error"], failed
    with frozen.client("admin") as c:
        error_of(c.post(f"{P}/runs", json={"override_freeze": ""}), 422, "RequestError")
        error_of(c.post(f"{P}/runs", json={"override_freeze": "  "}), 409, "GateError")
        assert len(c.get(f"{P}/runs").json()["items"]) == 1, "a blank override reason started a run"
        run = c.post(f"{P}/runs", json={"override_freeze": "security fix"}).json()
    assert frozen.wait_run("admin", run["id"], "failed", "waiting", "succeeded")["state"] == "waiting"
    with frozen.client("viewer") as c:
        staging = next(e for e in c.get(f"{P}/status").json()["environments"] if e["name"] == "staging")
    assert staging["freeze"]["name"] == "year-end" and staging["release"] is not None
    app = open_app(cwd=frozen.project.root, environ=frozen.project.env)
    try:
        entries = [e for e in app.store.audit_log() if e.action == "freeze.override"]
    finally:
        app.close()
    assert [e.actor for e in entries] == ["admin"]
    detail = json.loads(entries[0].detail)
    assert (detail["freeze"], detail["reason"], detail["run"]) == ("year-end", "security fix", run["id"])


def test_the_run_page_names_the_freeze_and_lets_an_admin_approve_through_it(project: Project) -> None:
    """Production frozen, a run waiting at its gate: the page says so; an approver is told only an admin may
    override; the admin's form has the field, and approving with a reason deploys and is audited."""
    from tests.server.test_web_pages import Browser

    now = datetime.now(UTC)
    start, end = (now - timedelta(days=1)).strftime("%Y-%m-%d"), (now + timedelta(days=2)).strftime("%Y-%m-%d")
    anchor = "      - {kind: local, name: production-1, path: .slipway/targets/production}\n"
    project.edit("slipway.yml", anchor, anchor + f'    freezes:\n      - {{name: launch, start: "{start}", end: "{end}"}}\n')
    project.commit("freeze production")
    srv = start_server(project, add_users(project, only=("admin", "approver")))
    try:
        with srv.client("admin") as c:
            run = c.post(f"{P}/runs", json={}).json()
        assert srv.wait_run("admin", run["id"], "waiting", "failed")["state"] == "waiting"
        page = f"/projects/webapp/runs/{run['id']}"
        approver = Browser(srv, "approver")
        html = approver.get(page).text
        assert "production is frozen by freeze launch" in html and "an admin may override" in html
        assert 'name="override_freeze"' not in html
        admin = Browser(srv, "admin")
        html = admin.get(page).text
        assert 'name="override_freeze"' in html, html
        sent = admin.post(f"{page}/approve", {"reason": "launch day", "override_freeze": "the launch itself",
                                              "csrf_token": admin.csrf})
        assert sent.status_code == 303, sent.text
        done = srv.wait_run("admin", run["id"], "succeeded", "failed")
        assert done["state"] == "succeeded", done
        with srv.client("admin") as c:
            audit = c.get(f"{P}/audit", params={"limit": 50}).json()["items"]
        overrides = [json.loads(a["detail"]) for a in audit if a["action"] == "freeze.override"]
        assert [(o["freeze"], o["reason"]) for o in overrides] == [("launch", "the launch itself")]
        approver.client.close()
        admin.client.close()
    finally:
        stop_server(srv)
        project.stop_apps()
