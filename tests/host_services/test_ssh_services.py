"""deploy.services on 2 SSH hosts of the test bed (no systemd there): each host runs its own supervisord
under its deploy root; a new release restarts the service on both, a killed app comes back, an app that
cannot bind its port fails the deploy with its own error line and both hosts go back."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.fleet.conftest import host_path, ssh_target
from tests.host_services.conftest import config, health, run_binding_a_taken_port, wait_until
from tests.support.ports import free_port
from tests.support.pytest_ssh import BedFactory

pytestmark = pytest.mark.timeout(420)

Make = Callable[[dict[str, Any]], Project]


def test_services_on_two_ssh_hosts(service_project: Make, ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(2)
    port = free_port()
    proj = service_project(config(port, [ssh_target(bed, i, f"web{i + 1}") for i in (0, 1)]))
    urls = [f"http://{h.address}:{port}" for h in bed.hosts]
    first = proj.slipway("run")
    assert first.stdout.count("supervisord started") == 2, first.stdout
    assert {health(u)["status"] for u in urls} == {"ok"}

    (proj.root / "app/release.txt").write_text("2\n")
    commit2 = proj.commit("release 2")
    second = proj.slipway("run")
    assert second.stdout.count("supervisord running") == 2, second.stdout  # the same daemon, not a second one
    assert [health(u)["commit"] for u in urls] == [commit2, commit2]

    # The host's supervisord restarts an app killed with SIGKILL.
    pidfile = host_path(bed, 1, "app/shared/run/web-0.pid")
    old = int(pidfile.read_text())
    os.kill(old, signal.SIGKILL)
    wait_until("supervisord on web2 restarted the app",
               lambda: int(pidfile.read_text()) != old and health(urls[1])["commit"] == commit2)

    currents = [os.readlink(host_path(bed, i, "app/current")) for i in (0, 1)]
    output, _ = run_binding_a_taken_port(proj, "0.0.0.0", "release 3 binds a port in use on every address")
    assert "Address already in use" in output and "did not start on web" in output, output
    assert [os.readlink(host_path(bed, i, "app/current")) for i in (0, 1)] == currents
    assert [health(u)["commit"] for u in urls] == [commit2, commit2]
