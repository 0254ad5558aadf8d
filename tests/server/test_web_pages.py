"""The web UI over a real ``slipway serve``, driven with httpx as a browser would: sign-in, CSRF on every
form, buttons only for users who may, escaping of untrusted output, pagination, the vendored files."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Project
from tests.server.conftest import PASSWORD, Server

#: A browser's page request (a 401 on one redirects to the sign-in page; an error is a page, not JSON).
HTML = {"Accept": "text/html,application/xhtml+xml"}
#: The page tests' pipeline: the example's build, a test stage that prints a script tag, and the gate.
QUICK_PIPELINE = """pipeline:
  - {name: build, kind: build}
  - {name: unit-tests, kind: test, run: "echo '<script>alert(1)</script>'"}
  - {name: approve-production, kind: approval}
  - {name: deploy-production, kind: deploy, environment: production}
"""
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def project(project: Project) -> Project:
    """The example with a short pipeline (these tests are about pages, not deployments)."""
    config = project.root / "slipway.yml"
    text = config.read_text()
    config.write_text(text[: text.index("\npipeline:")] + "\n" + QUICK_PIPELINE)
    project.commit("webapp: a short pipeline for the page tests")
    return project


class Browser:
    """A signed-in browser session (cookies kept) and the CSRF token its pages carry."""

    def __init__(self, server: Server, user: str) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=30, headers=HTML)
        form = self.client.get("/login")
        assert form.status_code == 200, form.text
        sent = self.client.post("/login", data={"user": user, "password": PASSWORD, "login_token": login_token(form), "next": "/"})
        assert sent.status_code == 303 and sent.headers["location"] == "/", sent.text
        self.csrf = field(self.client.get("/").text, "csrf_token")

    def post(self, url: str, data: dict[str, str], **kw: Any) -> httpx.Response:
        return self.client.post(url, data=data, **kw)

    def get(self, url: str) -> httpx.Response:
        return self.client.get(url)


@pytest.fixture
def sign_in(server: Server) -> Iterator[Callable[[str], Browser]]:
    """Sign a user in, as a browser; the sessions' clients are closed after the test."""
    opened: list[Browser] = []

    def open_as(user: str) -> Browser:
        opened.append(Browser(server, user))
        return opened[-1]

    yield open_as
    for browser in opened:
        browser.client.close()


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in:\n{html[:2000]}"
    return found.group(1)


def login_token(response: httpx.Response) -> str:
    return field(response.text, "login_token")


def waiting_run(server: Server) -> int:
    """A run of the project started through the API, once it waits at approve-production."""
    with server.client("deployer") as api:
        started = api.post("/api/projects/webapp/runs", json={"commit": "HEAD"})
        assert started.status_code == 202, started.text
    run_id: int = started.json()["id"]
    server.wait_run("admin", run_id, "waiting")
    return run_id


def state_of(server: Server, run_id: int) -> dict[str, Any]:
    with server.client("admin") as api:
        run: dict[str, Any] = api.get(f"/api/projects/webapp/runs/{run_id}").json()
        run["audit_total"] = api.get("/api/projects/webapp/audit", params={"limit": 1}).json()["total"]
        return run


def test_sign_in_goes_where_the_user_was_going_and_refuses_what_it_should(shared_server: Server) -> None:
    server = shared_server
    with httpx.Client(base_url=server.url, timeout=30, headers=HTML) as anonymous:
        sent_away = anonymous.get("/approvals")
        assert sent_away.status_code == 303 and sent_away.headers["location"] == "/login?next=/approvals"
        polled = anonymous.get("/fragments/matrix", headers={"HX-Request": "true", "HX-Current-URL": f"{server.url}/?x=1"})
        assert polled.status_code == 401 and polled.headers["hx-redirect"] == "/login?next=%2F%3Fx%3D1"
        form = anonymous.get("/login", params={"next": "/approvals"})
        token = login_token(form)
        assert field(form.text, "next") == "/approvals"
        wrong = anonymous.post("/login", data={"user": "approver", "password": "not it at all", "login_token": token})
        assert wrong.status_code == 401 and "wrong user name or password" in wrong.text
        assert "slipway_session" not in anonymous.cookies
        foreign = {"user": "approver", "password": PASSWORD, "login_token": token}
        cross_site = anonymous.post("/login", data=foreign, headers={**HTML, "Origin": "https://evil.example"})
        assert cross_site.status_code == 403 and "cross-site" in cross_site.text
        no_token = anonymous.post("/login", data={"user": "approver", "password": PASSWORD})
        assert no_token.status_code == 403 and "slipway_session" not in anonymous.cookies
        token = login_token(anonymous.get("/login"))
        data = {"user": "approver", "password": PASSWORD, "login_token": token, "next": "//evil.example/x"}
        signed_in = anonymous.post("/login", data=data)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"  # never off this server
        assert "HttpOnly" in signed_in.headers["set-cookie"] and "samesite=lax" in signed_in.headers["set-cookie"].lower()
        home = anonymous.get("/")
        assert home.status_code == 200 and 'id="signed-in-as">approver<' in home.text
        assert "script-src 'self'" in home.headers["content-security-policy"]
        out = anonymous.post("/logout", data={"csrf_token": field(home.text, "csrf_token")})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert anonymous.get("/").status_code == 303  # the session ended on the server


def test_a_form_without_the_right_csrf_token_is_refused_and_records_nothing(server: Server, sign_in: Callable[[str], Browser]) -> None:
    run_id = waiting_run(server)
    before = state_of(server, run_id)
    approver = sign_in("approver")
    url = f"/projects/webapp/runs/{run_id}/approve"
    reason = {"reason": "looks good"}
    refused = [
        approver.post(url, reason),
        approver.post(url, {**reason, "csrf_token": "not-the-token"}),
        approver.post(url, {**reason, "csrf_token": approver.csrf}, headers={**HTML, "Origin": "https://evil.example"}),
        approver.post(f"/projects/webapp/runs/{run_id}/reject", {**reason, "csrf_token": approver.csrf[:-2] + "xx"}),
    ]
    for answer in refused:
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith("text/html") and "Not allowed" in answer.text
    after = state_of(server, run_id)
    assert after["state"] == "waiting" and after["approvals"] == [] and after["audit_total"] == before["audit_total"]

    empty = approver.post(url, {"reason": "  ", "csrf_token": approver.csrf})
    assert empty.status_code == 422 and "a reason is required" in empty.text
    assert state_of(server, run_id)["approvals"] == []

    approved = approver.post(url, {"reason": "looks good", "csrf_token": approver.csrf})
    assert approved.status_code == 303 and approved.headers["location"] == f"/projects/webapp/runs/{run_id}"
    done = server.wait_run("admin", run_id, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert [(a["by"], a["reason"]) for a in done["approvals"]] == [("approver", "looks good")]
    commit_page = approver.get(f"/projects/webapp/commits/{done['commit']}")
    assert f'id="run-{run_id}"' in commit_page.text and "approved by approver: “looks good”" in commit_page.text
    production = approver.get("/projects/webapp/environments/production").text
    release = state_of(server, run_id)  # the release id is on the environment's deployments
    with server.client("viewer") as api:
        deployed = api.get("/api/projects/webapp/deployments", params={"environment": "production"}).json()["items"][0]
    assert deployed["run_id"] == run_id and deployed["release"] in production and release["state"] == "succeeded"
    home = approver.get("/").text
    cell = home[home.index('id="cell-webapp-production"') :]
    assert deployed["release"] in cell[: cell.index("</td>")]


def test_a_viewer_gets_no_approve_button_and_a_403_for_the_form_and_the_api(server: Server, sign_in: Callable[[str], Browser]) -> None:
    run_id = waiting_run(server)
    viewer, approver = sign_in("viewer"), sign_in("approver")
    for page in (f"/projects/webapp/runs/{run_id}", "/approvals"):
        seen = viewer.get(page)
        assert seen.status_code == 200 and f"/runs/{run_id}/approve" not in seen.text and "may not approve" in seen.text
        assert f"/runs/{run_id}/approve" in approver.get(page).text  # the approver's page has the form
    refused = viewer.post(f"/projects/webapp/runs/{run_id}/approve", {"reason": "me too", "csrf_token": viewer.csrf})
    assert refused.status_code == 403 and "viewer may not approve on production" in refused.text
    assert refused.headers["content-type"].startswith("text/html")
    with server.client("viewer") as api:
        answer = api.post(f"/api/projects/webapp/runs/{run_id}/approve", json={"reason": "me too"})
    assert answer.status_code == 403 and answer.json()["error"]["type"] == "AccessDenied"
    assert viewer.get("/projects/webapp/environments/production/rollback").status_code == 403
    assert "rollback-button" not in viewer.get("/projects/webapp/environments/production").text
    assert state_of(server, run_id)["approvals"] == []


def test_untrusted_output_is_escaped_text(server: Server, sign_in: Callable[[str], Browser]) -> None:
    run_id = waiting_run(server)
    page = sign_in("viewer").get(f"/projects/webapp/runs/{run_id}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert SCRIPT not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_lists_are_paginated_on_the_server(server: Server, sign_in: Callable[[str], Browser]) -> None:
    runs = [waiting_run(server) for _ in range(3)]  # each newer run supersedes the one waiting before it
    viewer = sign_in("viewer")
    first, second = viewer.get("/projects/webapp/runs?limit=2"), viewer.get("/projects/webapp/runs?limit=2&page=2")
    assert shown(first.text, "run") == [runs[2], runs[1]] and shown(second.text, "run") == [runs[0]]
    assert 'rel="next" href="/projects/webapp/runs?limit=2&amp;page=2"' in first.text and 'rel="prev"' not in first.text
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text and "page 2 of 2 · 3 in all" in second.text
    superseded = viewer.get("/projects/webapp/runs?state=superseded")
    assert shown(superseded.text, "run") == [runs[1], runs[0]]

    with server.client("viewer") as api:
        expected = [e["id"] for e in api.get("/api/projects/webapp/audit", params={"limit": 5, "offset": 5}).json()["items"]]
    assert len(expected) == 5 and shown(viewer.get("/projects/webapp/audit?limit=5&page=2").text, "audit") == expected
    assert shown(viewer.get("/approvals?limit=1").text, "waiting-webapp") == [runs[2]]
    assert viewer.get("/projects/webapp/runs?state=bogus").status_code == 422


def shown(html: str, prefix: str) -> list[int]:
    return [int(n) for n in re.findall(rf'id="{prefix}-(\d+)"', html)]


def test_the_vendored_files_are_served_as_recorded(shared_server: Server) -> None:
    server = shared_server
    table = (resources.files("slipway.web") / "static" / "VENDORED.md").read_text()
    recorded = dict(re.findall(r"^\| `([^`]+\.js)` \|.*\| `([0-9a-f]{64})` \|$", table, re.MULTILINE))
    assert set(recorded) == {"htmx-2.0.11.min.js", "htmx-ext-sse-2.2.4.min.js"}
    viewer = Browser(server, "viewer")
    page = viewer.get("/").text
    viewer.client.close()
    for name, sha256 in recorded.items():
        assert f'<script src="/static/{name}"></script>' in page
        served = httpx.get(f"{server.url}/static/{name}", timeout=30)
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == sha256


def test_rollback_asks_for_a_reason_and_rolls_back_as_the_signed_in_user(
    server: Server, sign_in: Callable[[str], Browser]
) -> None:
    releases = []
    for _ in range(2):
        run_id = waiting_run(server)
        with server.client("approver") as api:
            assert api.post(f"/api/projects/webapp/runs/{run_id}/approve", json={"reason": "go"}).status_code == 202
        assert server.wait_run("admin", run_id, "succeeded", "failed")["state"] == "succeeded"
        releases.append(production_release(server))
    first, second = releases
    assert first != second
    deployer, viewer = sign_in("deployer"), sign_in("viewer")
    environment = deployer.get("/projects/webapp/environments/production").text
    link = f"/projects/webapp/environments/production/rollback?release={first}"
    assert f'href="{link}"' in environment and f"release={second}" not in environment  # not to what runs now
    form = deployer.get(link).text
    assert field(form, "release") == first and 'name="reason" required' in form

    url = "/projects/webapp/environments/production/rollback"
    refused = viewer.post(url, {"release": first, "reason": "because", "csrf_token": viewer.csrf})
    assert refused.status_code == 403 and "viewer may not rollback on production" in refused.text
    no_reason = deployer.post(url, {"release": first, "reason": "", "csrf_token": deployer.csrf})
    assert no_reason.status_code == 422 and production_release(server) == second

    done = deployer.post(url, {"release": first, "reason": "the new one is slow", "csrf_token": deployer.csrf})
    assert done.status_code == 303, done.text
    rollback_id = int(done.headers["location"].rsplit("/", 1)[1])
    assert server.wait_run("admin", rollback_id, "succeeded", "failed")["state"] == "succeeded"
    assert production_release(server) == first
    with server.client("viewer") as api:
        newest = api.get("/api/projects/webapp/deployments", params={"environment": "production"}).json()["items"][0]
    assert (newest["kind"], newest["deployed_by"], newest["reason"]) == ("rollback", "deployer", "the new one is slow")
    missing = deployer.get("/no/such/page")
    assert missing.status_code == 404 and "there is no such page" in missing.text


def production_release(server: Server) -> str:
    with server.client("viewer") as api:
        envs = api.get("/api/projects/webapp/status").json()["environments"]
    return str(next(e for e in envs if e["name"] == "production")["release"])
