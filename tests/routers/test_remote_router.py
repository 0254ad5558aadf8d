"""nginx on another machine (``router.host``), reached over SSH like a target: a host of the SSH test bed.

The include directory is under the router host's own /srv (each bed host has a private one), and nginx is
started over SSH on that host, so it reads the file there: Slipway can only have written it through SSH.
Bootstrap before nginx starts (502), a rolling deployment through it, and ``slipway status`` reading it;
blue/green switches and a switch back through it. And bootstrap for a blue/green environment on SSH hosts (local nginx): the serving slot's backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.e2e.conftest import Project
from tests.routers.test_bootstrap import behind, get
from tests.support.nginx import NginxServer
from tests.support.ports import free_port
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
from tests.support.sshbed import SSHHost, SSHTestBed
from tests.zero_downtime.support import behind_nginx, blue_green

from slipway.targets.ssh import SSHTarget

pytestmark = pytest.mark.timeout(240)
CONF_DIR = "/srv/slipway-router"


@pytest.fixture
def remote(ssh_testbed: Callable[..., SSHTestBed]) -> Iterator[tuple[NginxServer, SSHHost]]:  # noqa: F811
    """A bed host and an nginx configured to run there, including CONF_DIR of that host; not started."""
    host = ssh_testbed(1).hosts[0]
    server = NginxServer([], worker_processes=1)
    server.conf_dir = Path(CONF_DIR)
    server.prepare(upstream=False)
    try:
        yield server, host
    finally:
        server.stop()


def on_host(host: SSHHost, command: str) -> str:
    """Run ``command`` on the bed host over SSH (its processes see its /srv)."""
    async def go() -> str:
        target = SSHTarget("router", host.address, root="/", port=host.port, username=host.username,
                           client_keys=[host.client_key], known_hosts=host.known_hosts)
        try:
            result = await target.run(command, timeout=30)
        finally:
            await target.close()
        assert result.ok, result
        return result.stdout

    return asyncio.run(asyncio.wait_for(go(), 60))


def test_nginx_on_another_host_is_bootstrapped_and_deployed_through_over_ssh(
    project: Project, remote: tuple[NginxServer, SSHHost]
) -> None:
    nginx, host = remote
    behind(project, nginx)
    with_router_host(project, host)

    done = project.slipway("router", "bootstrap", "production")
    assert "placeholder marked down" in done.stdout, done.stdout
    written = host.host_dir / "slipway-router" / "slipway_app.conf"
    assert "# slipway-state: " in written.read_text()  # on the router host's /srv
    assert not Path(CONF_DIR).exists()  # not on this machine

    start_on(host, nginx)
    assert get(nginx).status_code == 502

    assert project.json("run")["state"] == "succeeded"
    answer = get(nginx)
    assert answer.status_code == 200 and answer.json()["status"] == "ok", answer.text
    hosts = project.status()["production"]["hosts"]
    assert {h["router"] for h in hosts} == {"in rotation"}, hosts


def start_on(host: SSHHost, nginx: NginxServer) -> None:
    """Start ``nginx`` over SSH on the router host, so it reads the include files of that host's /srv."""
    on_host(host, f"{nginx.binary} -p {nginx.root} -c {nginx.config}")
    nginx._started = True  # stop() ends it (same pid namespace) and removes its prefix
    nginx._wait_listening(15)


def with_router_host(project: Project, host: SSHHost, **production: Any) -> None:
    """Point production's router at ``host`` over SSH (and set ``production``'s other keys)."""
    config = yaml.safe_load((project.root / "slipway.yml").read_text())
    env = config["environments"]["production"]
    env["router"]["host"] = {
        "address": host.address, "port": host.port, "user": host.username,
        "key": str(host.client_key), "known_hosts": str(host.known_hosts),
    }
    env.update(production)
    (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("nginx runs on the router host")


def test_blue_green_switches_and_switches_back_through_nginx_on_another_host(
    project: Project, remote: tuple[NginxServer, SSHHost]
) -> None:
    nginx, host = remote
    behind(project, nginx)
    blue, green = free_port(), free_port()
    with_router_host(
        project, host,
        targets=[{"kind": "local", "name": "production-1", "path": ".slipway/targets/production-1"}],
        strategy=blue_green((blue, green)),
    )
    done = project.slipway("router", "bootstrap", "production")
    assert "placeholder marked down" in done.stdout, done.stdout
    start_on(host, nginx)
    assert get(nginx).status_code == 502
    assert not Path(CONF_DIR).exists()  # the file is on the router host only

    assert project.json("run")["state"] == "succeeded"  # release 1 in blue, which serves
    written = host.host_dir / "slipway-router" / "slipway_app.conf"
    assert '"active_slot":"blue"' in written.read_text()
    assert get(nginx).json().get("v") is None
    project.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
    project.commit("release 2")
    assert project.json("run")["state"] == "succeeded"  # release 2 in green, which serves now
    assert '"active_slot":"green"' in written.read_text()
    assert {get(nginx).json().get("v") for _ in range(4)} == {2}
    hosts = project.status()["production"]["hosts"]
    assert {h["router"] for h in hosts} == {"in rotation"}, hosts

    back = project.slipway("rollback", "production", "--reason", "release 2 misbehaves")
    assert back.returncode == 0, back.stdout + back.stderr
    assert '"active_slot":"blue"' in written.read_text()
    assert {get(nginx).json().get("v") for _ in range(4)} == {None}  # the warm slot serves again


def test_bootstrap_of_a_blue_green_environment_lists_the_serving_slot(
    project: Project, ssh_testbed: Callable[..., SSHTestBed]  # noqa: F811
) -> None:
    bed = ssh_testbed(2)
    blue, green = free_port(), free_port()
    nginx = behind_nginx(project, bed, strategy=blue_green((blue, green)), port=blue, hosts=2)
    try:
        assert project.json("run")["state"] == "succeeded"  # release 1 in blue
        project.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
        project.commit("release 2")
        assert project.json("run")["state"] == "succeeded"  # release 2 in green, which serves
        nginx.stop(keep=True)  # a new load balancer
        (nginx.conf_dir / "slipway_app.conf").unlink()
        done = project.slipway("router", "bootstrap", "production")
        addresses = ", ".join(f"{h.address}:{green}" for h in bed.hosts[:2])
        assert f"-> {addresses};" in done.stdout, done.stdout
        nginx.start(prepared=True)
        assert {httpx.get(f"{nginx.url}/health", timeout=10).json().get("v") for _ in range(6)} == {2}
    finally:
        nginx.stop()
