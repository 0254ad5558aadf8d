"""A host pays its login shell once: every step of a deployment goes through one long-lived shell, and
later deployments and rollbacks reach it through the agent the first one left (targets/ssh_agent.py).

The bed's hosts log in with bash and a ``~/.bashrc`` that records each login shell (and costs CPU, as
pyenv's, rbenv's or conda's hooks do on real servers): the count is taken on the hosts themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.fleet.conftest import host_path, use_fleet
from tests.fleet.test_fleet_pipeline import stop_fleet_apps
from tests.host_services.conftest import wait_until
from tests.support.keeper import own_runtime_dir
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


def test_with_keep_the_next_command_opens_no_ssh_connection(
    project: Project, ssh_testbed: Callable[..., SSHTestBed], postgres_server: PostgresServer
) -> None:
    bed = ssh_testbed(1)
    try:
        with own_runtime_dir() as runtime:
            project.env["XDG_RUNTIME_DIR"] = str(runtime)
            database = postgres_server.create_database(f"keep_{os.getpid()}")
            use_fleet(project, bed, {"staging": [0]}, databases={"staging": database})
            config = yaml.safe_load((project.root / "slipway.yml").read_text())
            for target in config["environments"]["staging"]["targets"]:
                target["keep"] = 60
            (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            project.commit("keep connections for a minute")
            assert project.json("run")["state"] == "waiting"  # staging deployed; its end hands the host over
            wait_until("the kept connection", lambda: any((runtime / "slipway-ssh").glob("*.sock")), deadline=30)
            accepted = bed.accepted_logins(0)
            done = project.slipway("exec", "staging", "--", "echo", "kept")
            assert "kept" in done.stdout and bed.accepted_logins(0) == accepted, done.stdout
    finally:
        stop_fleet_apps(project, bed)
