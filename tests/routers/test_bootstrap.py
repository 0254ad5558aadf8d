"""Bootstrapping nginx on a new server: its ``proxy_pass`` names an upstream that only Slipway writes.

The example project (tests/e2e) with production behind a real nginx whose config Slipway did not touch
yet: no include file, so ``nginx -t`` fails and nginx cannot start. ``slipway router bootstrap`` writes
the file (a placeholder marked down before any deployment: nginx starts and answers 502), the first
deployment without it writes the file itself, and a hand-written placeholder is replaced only with
``--adopt``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.e2e.conftest import Project
from tests.support.nginx import NginxServer
from tests.support.ports import free_port

from slipway.errors import CommandFailed, DeploymentError, TargetError
from slipway.model.routing import Backend
from slipway.routers.nginx import NginxRouter
from slipway.store.repository import Store

pytestmark = pytest.mark.timeout(240)

#: What a user writes by hand so that nginx can start (the workaround the issue reports).
HAND_WRITTEN = "upstream slipway_app {\n    server 127.0.0.1:9 down; # keep: hand-written\n}\n"


@pytest.fixture
def nginx() -> Iterator[NginxServer]:
    """A private nginx, configured (its site proxies to slipway_app) but not started, without include file."""
    server = NginxServer([], worker_processes=1)
    server.prepare(upstream=False)
    try:
        yield server
    finally:
        server.stop()


def behind(project: Project, nginx: NginxServer) -> None:
    """Only production, two local targets behind ``nginx``: build, then deploy."""
    config: dict[str, Any] = yaml.safe_load((project.root / "slipway.yml").read_text())
    production = config["environments"]["production"]
    # two hosts (a rolling deployment never takes the last backend in rotation out), each on its own port
    production["targets"] = [
        {"kind": "local", "name": f"production-{i}", "path": f".slipway/targets/production-{i}",
         "vars": {"port": free_port()}}
        for i in (1, 2)
    ]
    production["strategy"] = {"kind": "rolling", "batch_size": 1}
    production["router"] = {
        "kind": "nginx", "group": "app", "port": "{{ vars.port }}", "conf_dir": str(nginx.conf_dir),
        "config": str(nginx.config), "prefix": str(nginx.root), "pid_file": str(nginx.pid_file),
        "nginx": nginx.binary, "drain_timeout": 5,
    }
    production["readiness"] = {"path": "/health", "successes": 2, "interval": 0.05, "deadline": 30}
    config["environments"] = {"production": production}
    config["pipeline"] = [
        {"name": "build", "kind": "build"},
        {"name": "deploy", "kind": "deploy", "environment": "production"},
    ]
    (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("production behind nginx")


def get(nginx: NginxServer) -> httpx.Response:
    return httpx.get(f"{nginx.url}/health", timeout=10)


def audited(project: Project) -> list[str]:
    """The actions of the project's audit log."""
    store = Store(f"sqlite:///{project.root / '.slipway/state.db'}")
    try:
        return [e.action for e in store.audit_log()]
    finally:
        store.close()


def include_file(nginx: NginxServer) -> Path:
    return nginx.conf_dir / "slipway_app.conf"


def test_nginx_starts_after_bootstrap_answers_502_then_serves_the_first_deployment(
    project: Project, nginx: NginxServer
) -> None:
    behind(project, nginx)
    refused = nginx.check()
    assert refused.returncode != 0 and 'host not found in upstream "slipway_app"' in refused.stderr, refused.stderr

    done = project.slipway("router", "bootstrap", "production")
    assert "placeholder marked down" in done.stdout and "nginx is not running: start it now" in done.stdout, done.stdout
    assert "# slipway-state: " in include_file(nginx).read_text()
    assert nginx.check().returncode == 0
    nginx.start(prepared=True)
    assert get(nginx).status_code == 502  # nothing deployed yet

    again = project.slipway("router", "bootstrap", "production")  # idempotent
    assert "was written by Slipway already: left as it is" in again.stdout, again.stdout

    run = project.json("run")
    assert run["state"] == "succeeded", run
    answer = get(nginx)
    assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text
    assert "router.bootstrap" in audited(project)

    # a new load balancer for an environment that runs: bootstrap lists the deployed hosts as they are
    nginx.stop(keep=True)
    include_file(nginx).unlink()
    rebuilt = project.slipway("router", "bootstrap", "production")
    ports = [t["vars"]["port"] for t in yaml.safe_load((project.root / "slipway.yml").read_text())[
        "environments"]["production"]["targets"]]
    assert f"-> 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]};" in rebuilt.stdout, rebuilt.stdout
    nginx.start(prepared=True)
    assert get(nginx).status_code == 200


def test_a_first_deployment_without_bootstrap_writes_the_include_file(project: Project, nginx: NginxServer) -> None:
    behind(project, nginx)
    run = project.slipway("run", "--json", check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "nginx is not running: start it now" in run.stderr, run.stderr
    assert nginx.check().returncode == 0
    nginx.start(prepared=True)
    answer = get(nginx)
    assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text

    project.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
    project.commit("release 2")
    second = project.json("run")  # nginx runs now: drained, reloaded and put back as usual
    assert second["state"] == "succeeded", second
    assert get(nginx).json().get("v") == 2


def test_a_hand_written_placeholder_is_refused_with_a_hint_and_replaced_with_adopt(
    project: Project, nginx: NginxServer
) -> None:
    behind(project, nginx)
    nginx.conf_dir.mkdir(parents=True)
    include_file(nginx).write_text(HAND_WRITTEN)
    nginx.start(prepared=True)

    refused = project.slipway("router", "bootstrap", "production", check=False)
    assert refused.returncode == 6, refused.stdout + refused.stderr
    assert "has no slipway-state line: it was not written by Slipway" in refused.stderr, refused.stderr
    assert "slipway router bootstrap ENVIRONMENT --adopt" in refused.stderr, refused.stderr
    deploy = project.slipway("run", check=False)
    assert deploy.returncode != 0 and "--adopt" in deploy.stdout + deploy.stderr, deploy.stdout + deploy.stderr
    assert include_file(nginx).read_text() == HAND_WRITTEN

    adopted = project.slipway("router", "bootstrap", "production", "--adopt")
    assert "replaced (adopted)" in adopted.stdout and "nginx reloaded" in adopted.stdout, adopted.stdout
    assert "# slipway-state: " in include_file(nginx).read_text()
    assert "router.adopt" in audited(project)
    assert get(nginx).status_code == 502
    assert project.json("run")["state"] == "succeeded"
    assert get(nginx).status_code == 200


def test_bootstrap_checks_the_include_and_restores_the_previous_file(nginx: NginxServer, tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-included"
    router = NginxRouter(conf_dir=elsewhere, config=nginx.config, prefix=nginx.root, pid_file=nginx.pid_file,
                         nginx=nginx.binary)

    async def body() -> None:
        with pytest.raises(TargetError, match="does not include") as info:
            await router.bootstrap("app", [])
        assert f"include {elsewhere}/*.conf" in info.value.hint
        assert list(elsewhere.iterdir()) == [], "the file was not removed"

        router.conf_dir = str(nginx.conf_dir)
        nginx.conf_dir.mkdir(parents=True)
        include_file(nginx).write_text(HAND_WRITTEN)
        with pytest.raises(DeploymentError, match="no slipway-state line") as refused:
            await router.bootstrap("app", [])
        assert "--adopt" in refused.value.hint
        with pytest.raises(CommandFailed, match="nginx refused"):  # nginx -t fails: the hand-written file is back
            await router.bootstrap("app", [Backend(host="no-such-host.invalid", port=8080)], adopt=True)
        assert include_file(nginx).read_text() == HAND_WRITTEN

    asyncio.run(asyncio.wait_for(body(), 60))
