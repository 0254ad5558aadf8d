"""The load-test stage against the deployed example app: figures stored and shown, thresholds enforced."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.integration_checks.conftest import config

pytestmark = pytest.mark.timeout(180)

STAGES = """\
  - name: load-health
    kind: load-test
    environment: dev
    load_test:
      urls: ["{{ environment.url }}/health"]
      requests: 80
      concurrency: 4
      time_limit: 30
      thresholds: {p50_ms: 2000, p95_ms: 5000, max_error_rate: 0}
  - name: load-missing
    kind: load-test
    environment: dev
    load_test:
      urls: ["{{ environment.url }}/no-such-page"]
      requests: 20
      concurrency: 2
      thresholds: {max_error_rate: 0.01}
"""


def test_a_load_test_passes_its_thresholds_and_the_next_breaks_one(project: Project) -> None:
    (project.root / "slipway.yml").write_text(config(project.ports["dev"], stages=STAGES))
    project.commit("load tests after the deployment")
    failed = project.slipway("run", check=False)
    assert failed.returncode == 8, failed.stderr  # a threshold broke: a check failed
    assert "load test of dev failed: error rate 100.0% > 1.0%" in failed.stderr
    assert "load-missing" in failed.stderr and "errors 100.0%" in failed.stderr
    [run] = project.json("history", "--limit", "1")
    states = {s["name"]: s["state"] for s in run["stages"]}
    assert states == {
        "build": "succeeded",
        "deploy-dev": "succeeded",
        "load-health": "succeeded",
        "load-missing": "failed",
    }

    passed = project.slipway("logs", str(run["id"]), "--stage", "load-health").stdout
    assert "load-test: 80 x GET at concurrency 4" in passed
    assert "requests: 80 of 80 completed" in passed and "errors: 0 (0.0%)" in passed
    assert "latency: p50 " in passed and "thresholds: p50 <= 2000 ms, p95 <= 5000 ms, error rate <= 0.0%" in passed
    assert "verdict: every threshold held" in passed

    broke = project.slipway("logs", str(run["id"]), "--stage", "load-missing").stdout
    assert "requests: 20 of 20 completed" in broke and "errors: 20 (100.0%)" in broke
    assert "BROKEN: " in broke


class HangingServer:
    """A real HTTP server on 127.0.0.1 whose /hang never answers (until the server closes)."""

    def __init__(self) -> None:
        closing = self.closing = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/hang"):
                    closing.wait(60)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that give up at the time limit break pipes

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    server = HangingServer()
    try:
        yield server
    finally:
        server.close()


HANGING = """\
  - name: load-hanging
    kind: load-test
    environment: dev
    load_test:
      urls: ["{{{{ environment.url }}}}/health", "{url}/hang"]
      requests: 300
      concurrency: 10
      time_limit: 2
      request_timeout: 30{extra}
  - {{name: after-load, kind: test, run: 'true'}}
"""


def test_a_load_test_whose_requests_hang_fails_and_stops_the_pipeline(
    project: Project, hanging_server: HangingServer
) -> None:
    # The reported case: "30 of 300 completed (stopped by the time limit); errors: 0 (0.0%); every
    # threshold held", and the pipeline went on.
    stages = HANGING.format(url=hanging_server.url, extra="")
    (project.root / "slipway.yml").write_text(config(project.ports["dev"], stages=stages))
    project.commit("a load test against a URL that never answers")
    failed = project.slipway("run", check=False)
    assert failed.returncode == 8, failed.stdout + failed.stderr
    assert "load test of dev failed: stopped by the time limit (2 s)" in " ".join(failed.stderr.split())
    [run] = project.json("history", "--limit", "1")
    states = {s["name"]: s["state"] for s in run["stages"]}
    assert states["load-hanging"] == "failed" and states.get("after-load") in (None, "pending", "skipped")
    logs = project.slipway("logs", str(run["id"]), "--stage", "load-hanging").stdout
    assert "(stopped by the time limit: 10 abandoned in flight" in logs
    assert "errors: 0 " not in logs and "errors: 10 (" in logs
    assert "BROKEN: stopped by the time limit" in logs and "every threshold held" not in logs
    assert "no answer before the time limit (abandoned)" in logs


def test_allow_partial_lets_a_stopped_load_test_pass_on_its_thresholds(
    project: Project, hanging_server: HangingServer
) -> None:
    stages = HANGING.format(url=hanging_server.url, extra="\n      allow_partial: true")
    (project.root / "slipway.yml").write_text(config(project.ports["dev"], stages=stages))
    project.commit("a partial load test is allowed")
    project.slipway("run")
    [run] = project.json("history", "--limit", "1")
    logs = project.slipway("logs", str(run["id"]), "--stage", "load-hanging").stdout
    assert "a partial run is allowed" in logs and "verdict: every threshold held" in logs
