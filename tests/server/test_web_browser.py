"""End to end in a real browser (Debian's Chromium driven by Playwright): an approver signs in, finds the
example's run waiting at approve-production, approves it with a reason, watches the production
deployment's output arrive live, and sees the home matrix show the new release in production; a viewer
gets no approve button and a 403 from the API. Screenshots of the home and run pages are kept."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import REPO
from tests.e2e.conftest import Project
from tests.server.conftest import PASSWORD, PATIENCE, Server

SCRIPT = "<script>alert(1)</script>"
FIRST, SECOND = "production says: first line", "production says: second line"
#: Playwright's bound for each wait, in milliseconds (the machine may be loaded: slow is not failing).
WAIT = int(PATIENCE * 1000)
SHOTS = REPO / ".test-artifacts" / "screenshots"


@pytest.fixture
def project(project: Project) -> Project:
    """The example, whose hooks print a script tag (untrusted output) and whose production activate
    prints a line, then waits for the test to open a gate file before it prints the next: the test sees
    the first line while the deployment is still running, whatever the machine's load. The commands are
    shown too: they spell the lines so that only the output holds them."""
    gate = project.root.parent / "open-the-gate"
    project.edit(
        "slipway.yml",
        '    configure:\n      - echo "PORT={{ vars.port }}" > app.env\n',
        '    configure:\n      - echo "PORT={{ vars.port }}" > app.env\n      - echo \'<scr\'\'ipt>alert(1)</script>\'\n',
    )
    wait = (
        f"if [ {{{{ environment.name }}}} = production ]; then echo 'production says:' $(echo first) line; i=0; "
        f"while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; echo 'production says:' $(echo second) line; fi"
    )
    project.edit(
        "slipway.yml",
        "      - sh bin/restart.sh {{ vars.port }} {{ paths.shared }} {{ host.address }}\n",
        "      - sh bin/restart.sh {{ vars.port }} {{ paths.shared }} {{ host.address }}\n" f'      - "{wait}"\n',
    )
    project.commit("webapp: hooks that print untrusted output, and a production activate the test paces")
    return project


def sign_in(page: Page, user: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto("/login")
    page.fill('input[name="user"]', user)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page.locator("#signed-in-as")).to_have_text(user, timeout=WAIT)


def test_an_approver_approves_in_the_browser_and_watches_production_deploy_live(
    server: Server, chromium: Any, request: pytest.FixtureRequest
) -> None:
    shots = SHOTS / request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    with server.client("deployer") as api:
        started = api.post("/api/projects/webapp/runs", json={"commit": "HEAD"})
        assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    server.wait_run("admin", run_id, "waiting")
    run_url = f"/projects/webapp/runs/{run_id}"
    dialogs: list[str] = []

    viewer = chromium.new_context(base_url=server.url).new_page()
    viewer.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(viewer, "viewer")
    viewer.goto(run_url)
    expect(viewer.locator(".no-role")).to_contain_text("you may not approve it", timeout=WAIT)
    assert viewer.locator(".approve-button").count() == 0
    viewer.goto("/approvals")
    expect(viewer.locator(f"#waiting-webapp-{run_id}")).to_be_visible(timeout=WAIT)
    assert viewer.locator(".approve-button").count() == 0
    with server.client("viewer") as api:
        refused = api.post(f"/api/projects/webapp/runs/{run_id}/approve", json={"reason": "a viewer tries"})
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "AccessDenied"

    page = chromium.new_context(base_url=server.url, viewport={"width": 1400, "height": 1000}).new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, "approver")
    page.click("#nav-approvals")
    waiting = page.locator(f"#waiting-webapp-{run_id}")
    expect(waiting).to_be_visible(timeout=WAIT)
    waiting.locator('form.approve input[name="reason"]').fill("staging looks right; ship it")
    page.screenshot(path=str(shots / "approvals.png"), full_page=True)
    waiting.locator(".approve-button").click()

    page.wait_for_url(f"**{run_url}", timeout=WAIT)
    live = page.locator("#live-output")
    expect(live).to_contain_text(FIRST, timeout=WAIT)  # streamed while the hook is still running
    assert SECOND not in live.inner_text()
    assert server.wait_run("viewer", run_id, "running")["state"] == "running"
    expect(page.locator("#strip .stage.state-running")).to_contain_text("deploy-production", timeout=WAIT)
    expect(live).to_contain_text(SCRIPT, timeout=WAIT)  # the production configure hook's, live, as text
    page.screenshot(path=str(shots / "run-live.png"), full_page=True)
    (server.project.root.parent / "open-the-gate").touch()
    # In the live output, or already in the stored output: once the run ends, the page reloads its run part
    # and #live-output is gone (under load that came before a look at the live output saw SECOND there).
    expect(page.locator("#run-body")).to_contain_text(SECOND, timeout=WAIT)

    done = server.wait_run("viewer", run_id, "succeeded", "failed")
    assert done["state"] == "succeeded", done
    expect(page.locator("#run-body")).to_have_attribute("data-state", "succeeded", timeout=WAIT)  # reloaded at the end
    expect(page.locator("#strip")).to_contain_text("approved by approver", timeout=WAIT)
    body = page.locator("#run-body").inner_text()
    assert SCRIPT in body and FIRST in body and SECOND in body  # the stored output, as text
    page.screenshot(path=str(shots / "run.png"), full_page=True)

    with server.client("viewer") as api:
        production = next(e for e in api.get("/api/projects/webapp/status").json()["environments"] if e["name"] == "production")
    assert production["run_id"] == run_id
    page.goto("/")
    cell = page.locator("#cell-webapp-production")
    expect(cell).to_contain_text(production["release"], timeout=WAIT)
    expect(cell).to_contain_text("approver", timeout=WAIT)
    expect(page.locator(".waiting")).to_contain_text("0 runs awaiting approval", timeout=WAIT)
    page.screenshot(path=str(shots / "home.png"), full_page=True)
    assert dialogs == []  # no script of the output ran
    for shot in ("approvals.png", "run-live.png", "run.png", "home.png"):
        assert (shots / shot).stat().st_size > 0
        print(f"screenshot: {shots / shot}")


def test_the_home_matrix_refreshes_by_itself_until_the_session_ends(server: Server, chromium: Any) -> None:
    context = chromium.new_context(base_url=server.url)
    page = context.new_page()
    sign_in(page, "viewer")
    cell = page.locator("#cell-webapp-dev")
    expect(cell).to_contain_text("nothing deployed", timeout=WAIT)
    with server.client("deployer") as api:
        run_id = api.post("/api/projects/webapp/runs", json={"commit": "HEAD"}).json()["id"]
    server.wait_run("admin", run_id, "waiting")
    expect(cell).to_contain_text(f"run #{run_id}", timeout=WAIT)  # no reload: the page polls
    expect(page.locator(".waiting")).to_contain_text("1 run awaiting approval", timeout=WAIT)
    other = context.new_page()  # the same browser signs out in another tab
    other.goto("/approvals")
    other.click("form.signout button")
    other.wait_for_url("**/login", timeout=WAIT)
    page.wait_for_url("**/login?next=%2F", timeout=WAIT)  # the next refresh finds the session ended
