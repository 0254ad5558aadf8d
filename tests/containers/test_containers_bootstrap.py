"""Container targets behind an nginx that has never started: its ``proxy_pass`` names an upstream only Slipway writes.

dev: ``slipway router bootstrap dev`` writes a placeholder (nginx starts and answers 502), the first deployment
routes to the new container. staging: no bootstrap and nginx not running; the first deployment writes the
include file itself instead of failing, and nginx started afterwards serves the container. And dev's nginx on
another machine (``router.host``: a host of the SSH test bed, reached over SSH): bootstrapped, then routed to
each new container.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import config, get, image_project
from tests.routers.test_remote_router import CONF_DIR, remote, start_on  # noqa: F401  (remote: a fixture)
from tests.support.nginx import NginxServer
from tests.support.podman import PodmanService
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
from tests.support.registry import RegistryServer
from tests.support.sshbed import SSHHost

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def fresh_nginx() -> Iterator[dict[str, NginxServer]]:
    """One nginx per environment, configured but not started, without any include file."""
    servers = {env: NginxServer([], worker_processes=1) for env in ("dev", "staging")}
    try:
        for server in servers.values():
            server.prepare(upstream=False)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_first_container_deployments_behind_a_fresh_nginx(
    tmp_path: Path, podman_service: PodmanService, session_registry: RegistryServer, cleanup_app: str,
    fresh_nginx: dict[str, NginxServer],
) -> None:
    staging = [{"kind": "container", "name": "staging-1", "engine": podman_service.base_url}]
    project = image_project(tmp_path / "shop", config(cleanup_app, podman_service, session_registry.address,
                                                      fresh_nginx, staging))
    dev, stg = fresh_nginx["dev"], fresh_nginx["staging"]
    assert dev.check().returncode != 0 and stg.check().returncode != 0  # nginx cannot start yet

    done = project.slipway("router", "bootstrap", "dev")
    assert "placeholder marked down" in done.stdout, done.stdout
    dev.start(prepared=True)
    assert get(dev)[0] == 502

    first = project.slipway("run", "--json", check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert get(dev) == (200, "v1")
    assert "nginx is not running: start it now" in first.stderr, first.stderr  # staging's nginx
    assert stg.check().returncode == 0
    stg.start(prepared=True)
    assert get(stg) == (200, "v1")

    # a new load balancer for dev, which runs v1: bootstrap routes to the running container as it is
    dev.stop(keep=True)
    (dev.conf_dir / "slipway_app.conf").unlink()
    rebuilt = project.slipway("router", "bootstrap", "dev")
    assert "placeholder" not in rebuilt.stdout and "-> 127.0.0.1:" in rebuilt.stdout, rebuilt.stdout
    dev.start(prepared=True)
    assert get(dev) == (200, "v1")


def test_container_deployments_through_nginx_on_another_host(
    tmp_path: Path, podman_service: PodmanService, session_registry: RegistryServer, cleanup_app: str,
    fresh_nginx: dict[str, NginxServer], remote: tuple[NginxServer, SSHHost],  # noqa: F811
) -> None:
    nginx, host = remote
    staging = [{"kind": "container", "name": "staging-1", "engine": podman_service.base_url}]
    slipway_yml: dict[str, Any] = config(cleanup_app, podman_service, session_registry.address,
                                         {**fresh_nginx, "dev": nginx}, staging)
    del slipway_yml["environments"]["staging"]  # only dev, behind the remote nginx
    slipway_yml["pipeline"] = [s for s in slipway_yml["pipeline"] if s.get("environment") != "staging"]
    slipway_yml["environments"]["dev"]["router"]["host"] = {
        "address": host.address, "port": host.port, "user": host.username,
        "key": str(host.client_key), "known_hosts": str(host.known_hosts),
    }
    project = image_project(tmp_path / "shop", slipway_yml)

    done = project.slipway("router", "bootstrap", "dev")
    assert "placeholder marked down" in done.stdout, done.stdout
    start_on(host, nginx)
    assert get(nginx)[0] == 502
    assert not Path(CONF_DIR).exists()  # written on the router host only

    first = project.slipway("run", "--json", check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    assert get(nginx) == (200, "v1")
    written = (host.host_dir / "slipway-router" / "slipway_app.conf").read_text()
    assert "127.0.0.1:" in written and "placeholder" not in written, written
    (project.root / "www/version").write_text("v2\n")
    project.commit("v2")
    second = project.slipway("run", "--json", check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert get(nginx) == (200, "v2")
    assert {h["router"] for h in project.status()["dev"]["hosts"]} == {"in rotation"}
