"""A host pays its login shell once: every step of a deployment goes through one long-lived shell, and
later deployments and rollbacks reach it through the agent the first one left (targets/ssh_agent.py).

The bed's hosts log in with bash and a ``~/.bashrc`` that records each login shell (and costs CPU, as
pyenv's, rbenv's or conda's hooks do on real servers): the count is taken on the hosts themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Project
from tests.fleet.conftest import host_path, use_fleet
from tests.fleet.test_fleet_pipeline import stop_fleet_apps
from tests.support.postgres import PostgresServer
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(300)

STAGING, PRODUCTION = [0], [1, 2]


def test_each_host_runs_its_login_shell_once_for_deployments_and_rollbacks(
    project: Project, ssh_testbed: Callable[..., SSHTestBed], postgres_server: PostgresServer
) -> None:
    bed = ssh_testbed(3, heavy_shell=2000)
    names = [h.name for h in bed.hosts]
    try:
        databases = {env: postgres_server.create_database(f"shell_{env}_{os.getpid()}") for env in ("staging", "production")}
        use_fleet(project, bed, {"staging": STAGING, "production": PRODUCTION}, databases=databases)
        waiting = project.json("run")
        assert waiting["state"] == "waiting", waiting
        assert bed.logins() == {names[0]: 1, names[1]: 0, names[2]: 0}

        project.slipway("approve", str(waiting["id"]), "--reason", "one shell each")
        assert bed.logins() == {names[0]: 1, names[1]: 1, names[2]: 1}
        release_one = project.status()["production"]["release"]

        project.edit("app/store.py", "oldest first", "oldest first (v2)")
        project.commit("v2: one file changed")
        project.slipway("approve", str(project.json("run")["id"]), "--reason", "v2")
        assert bed.logins() == {names[0]: 1, names[1]: 1, names[2]: 1}  # through each host's agent

        project.slipway("rollback", "production", "--reason", "back to v1")
        assert bed.logins() == {names[0]: 1, names[1]: 1, names[2]: 1}
        for index in PRODUCTION:
            assert os.readlink(host_path(bed, index, "app/current")) == f"releases/{release_one}"
    finally:
        stop_fleet_apps(project, bed)
