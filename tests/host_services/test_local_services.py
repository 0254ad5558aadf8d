"""deploy.services on a local target, through the real CLI: deploy, restart on a new release, restart by
supervisord after a crash, a service that cannot bind its port fails the deploy and the host goes back,
and a rollback restarts the release it goes back to."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.host_services.conftest import config, health, run_binding_a_taken_port, wait_until
from tests.support.ports import free_port, free_ports

pytestmark = pytest.mark.timeout(300)

Make = Callable[[dict[str, Any]], Project]


def _pid(path: Path) -> int:
    return int(path.read_text().strip())


def _current(proj: Project) -> str:
    return os.readlink(proj.root / ".slipway/targets/dev/current")


def test_a_service_runs_restarts_on_release_and_after_a_crash(service_project: Make) -> None:
    port = free_port()
    proj = service_project(config(port, [{"kind": "local", "name": "dev-1", "path": ".slipway/targets/dev"}]))
    url = f"http://127.0.0.1:{port}"
    first = proj.slipway("run")
    assert "restart-services (web)" in first.stdout and "web: 1 instance running on port" in first.stdout
    one = health(url)
    assert one["status"] == "ok"

    # A second release: the service is restarted on it (its /health names the new commit).
    (proj.root / "app/release.txt").write_text("2\n")
    commit2 = proj.commit("release 2")
    proj.slipway("run")
    assert health(url)["commit"] == commit2

    # kill -9 of the app: supervisord starts it again, on the same release.
    pidfile = proj.root / ".slipway/targets/dev/shared/run/web-0.pid"
    old = _pid(pidfile)
    os.kill(old, signal.SIGKILL)
    wait_until("supervisord restarted the app", lambda: _pid(pidfile) != old and health(url)["commit"] == commit2)


def test_a_service_that_cannot_bind_fails_the_deploy_and_the_host_goes_back(service_project: Make) -> None:
    port = free_port()
    proj = service_project(config(port, [{"kind": "local", "name": "dev-1", "path": ".slipway/targets/dev"}]))
    url = f"http://127.0.0.1:{port}"
    proj.slipway("run")
    good = health(url)["commit"]
    before = _current(proj)
    output, taken = run_binding_a_taken_port(proj, "127.0.0.1", "release 2 binds a port in use")
    assert "service 'web' did not start on dev-1" in output, output
    assert "Address already in use" in output, output  # the app's own error line, from its log
    assert _current(proj) == before  # the host is back on the release it ran
    assert health(url)["commit"] == good  # and that release's service answers again

    # A rollback restarts the services of the release it goes back to.
    proj.edit("app/server.py", f"Server((args.host, {taken})", "Server((args.host, args.port)")
    commit3 = proj.commit("release 3")
    proj.slipway("run")
    assert health(url)["commit"] == commit3
    proj.slipway("rollback", "dev", "--reason", "back to the first release")
    assert health(url)["commit"] == good and _current(proj) == before


def test_instances_templated_port_readiness_env_and_secrets(service_project: Make) -> None:
    port = _two_free_ports()
    targets = [{"kind": "local", "name": "dev-1", "path": ".slipway/targets/dev"}]
    readiness = [{"kind": "http", "url": f"http://{{{{ host.address }}}}:{port + 1}/health", "retries": 30,
                  "backoff": {"initial": 0.2, "max": 1}}]
    data = config("{{ vars.port }}", targets, instances=2, env={"GREETING": "hello {{ host.name }}"},
                  secrets=["API_TOKEN"], readiness=readiness)
    data["deploy"]["services"]["worker"] = {"command": "sleep 600", "stop_timeout": 1}
    data["environments"]["dev"].update(vars={"port": port}, secrets={"API_TOKEN": {"env": "SVC_API_TOKEN"}})
    proj = service_project(data)
    proj.env["SVC_API_TOKEN"] = "s3cret-token-value"
    run = proj.slipway("run")
    assert f"web: 2 instances running on port {port}, {port + 1}" in run.stdout, run.stdout
    assert "worker: 1 instance running" in run.stdout, run.stdout
    assert "s3cret-token-value" not in run.stdout + run.stderr
    assert health(f"http://127.0.0.1:{port}")["status"] == "ok"
    assert health(f"http://127.0.0.1:{port + 1}")["status"] == "ok"
    script = proj.root / ".slipway/targets/dev/supervisor/programs/web.sh"
    assert script.stat().st_mode & 0o777 == 0o700
    text = script.read_text()
    assert "GREETING='hello dev-1'" in text and "API_TOKEN=s3cret-token-value" in text
    pids = {_pid(proj.root / f".slipway/targets/dev/shared/run/web-{i}.pid") for i in (0, 1)}
    assert len(pids) == 2
    environ = (Path("/proc") / str(pids.pop()) / "environ").read_bytes().split(b"\0")
    assert b"API_TOKEN=s3cret-token-value" in environ and b"GREETING=hello dev-1" in environ


def _two_free_ports() -> int:
    """A port P with P + 1 free too (instance 1 listens there): a free P alone left web-1 a taken port."""
    return free_ports(2)


def test_a_restart_drops_no_accepted_connection(service_project: Make) -> None:
    """While a new release restarts the service, every connection the app accepted gets its answer: the old
    process gets its stop signal and answers what it holds before it exits (only new connections are
    refused in the gap between the two processes)."""
    port = free_port()
    proj = service_project(config(port, [{"kind": "local", "name": "dev-1", "path": ".slipway/targets/dev"}]))
    proj.slipway("run")
    (proj.root / "app/release.txt").write_text("2\n")
    commit2 = proj.commit("release 2")
    counts = {"ok": 0, "refused": 0}
    dropped: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/health")
                conn.getresponse().read()
                counts["ok"] += 1
            except ConnectionRefusedError:
                counts["refused"] += 1
                time.sleep(0.01)
            except (OSError, http.client.HTTPException) as exc:
                dropped.append(repr(exc))
            finally:
                conn.close()

    worker = threading.Thread(target=load)
    worker.start()
    try:
        proj.slipway("run")
    finally:
        stop.set()
        worker.join(timeout=30)
    assert health(f"http://127.0.0.1:{port}")["commit"] == commit2
    assert counts["ok"] > 10 and not dropped, (counts, dropped[:5])
