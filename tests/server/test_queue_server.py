"""A run the server drives queues for a busy environment (issue 14, "Queues, not failures"), and every view
shows it: the JSON API's status and run, the web UI's home matrix, environment page and run page, and the
CLI following the run through the server until it deploys (the event stream does not end while it waits).

The environment is held by this test process itself: it takes ``environment production``'s lock as a live
holder (the way a deployment in another process holds it), then lets go.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

import pytest

from slipway.services.reconcile import holder_text
from slipway.store.repository import Store
from tests.e2e.conftest import SLIPWAY
from tests.server.conftest import PATIENCE, Server
from tests.server.test_web_pages import Browser, project, sign_in, waiting_run  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(300)


def test_a_run_the_server_drives_waits_in_the_queue_shown_everywhere_then_deploys(
    server: Server, sign_in: Callable[[str], Browser]  # noqa: F811 - the fixture
) -> None:
    run_id = waiting_run(server)
    store = Store(f"sqlite:///{server.project.root / '.slipway/state.db'}")
    holder = holder_text("tester", run_id=None, doing="holding production in a test")
    store.acquire_lock("environment production", holder, ttl=600)
    follower: subprocess.Popen[str] | None = None
    try:
        env = {**server.project.env, "SLIPWAY_SERVER": server.url, "SLIPWAY_TOKEN": server.tokens["approver"]}
        follower = subprocess.Popen(
            [SLIPWAY, "approve", str(run_id), "--reason", "ship it"], cwd=server.project.root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        run = server.wait_run("viewer", run_id, "queued")
        assert {s["name"]: s["state"] for s in run["stages"]}["deploy-production"] == "queued"
        with server.client("viewer") as api:
            status = api.get("/api/projects/webapp/status").json()
        production = next(e for e in status["environments"] if e["name"] == "production")
        assert [q["run_id"] for q in production["queue"]] == [run_id]

        viewer = sign_in("viewer")
        home = viewer.get("/").text
        assert f'href="/projects/webapp/runs/{run_id}">#{run_id}</a>' in home and "state-queued" in home
        page = viewer.get("/projects/webapp/environments/production").text
        assert 'id="env-queue"' in page and f"run #{run_id}" in page
        assert 'class="state state-queued">queued<' in viewer.get(f"/projects/webapp/runs/{run_id}").text
        assert follower.poll() is None, follower.communicate()[0]  # still following the run
    except BaseException:
        if follower is not None:  # reaped, not left to warn at garbage collection in a later test
            follower.kill()
            follower.communicate(timeout=60)
        raise
    finally:
        store.release_lock("environment production", holder)
        store.close()
    assert server.wait_run("viewer", run_id, "succeeded", "failed")["state"] == "succeeded"
    assert follower is not None
    out, _ = follower.communicate(timeout=PATIENCE)
    assert follower.returncode == 0, out
    assert f"run {run_id} is queued for production behind the deployment of {holder}" in " ".join(out.split())
    assert f"run {run_id} succeeded" in out


def test_the_event_stream_of_a_run_queued_in_another_process_follows_it_until_it_deploys(server: Server) -> None:
    run_id = waiting_run(server)
    store = Store(f"sqlite:///{server.project.root / '.slipway/state.db'}")
    holder = holder_text("tester", run_id=None, doing="holding production in a test")
    store.acquire_lock("environment production", holder, ttl=600)
    held, seen, ended = True, [], None
    local = subprocess.Popen(  # the CLI drives it in its own process, not the server
        [SLIPWAY, "approve", str(run_id), "--reason", "ship it"], cwd=server.project.root, env=server.project.env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        server.wait_run("viewer", run_id, "queued")
        with server.client("viewer") as api, api.stream(
            "GET", f"/api/projects/webapp/runs/{run_id}/events", timeout=PATIENCE
        ) as stream:
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event in ("run", "end"):
                    state = json.loads(line.removeprefix("data: "))["state"]
                    if event == "end":
                        ended = state
                        break
                    seen.append(state)
                    if held and state == "queued":  # the stream goes on while the run waits: let it go now
                        store.release_lock("environment production", holder)
                        held = False
        out, _ = local.communicate(timeout=PATIENCE)
    except BaseException:
        local.kill()
        local.communicate(timeout=60)
        raise
    finally:
        if held:
            store.release_lock("environment production", holder)
        store.close()
    assert local.returncode == 0, out
    assert seen[0] == "queued" and ended == "succeeded", (seen, ended)
