"""The example pipeline through SSH environments of several real hosts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.fleet.conftest import host_path, use_fleet
from tests.support.postgres import PostgresServer
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(420)

STAGING, PRODUCTION = [0, 1], [2, 3, 4]


def health(address: str, port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=5) as resp:
        return json.loads(resp.read())


def stop_fleet_apps(project: Project, bed: SSHTestBed) -> None:
    for host in bed.hosts:
        pidfile = host.host_dir / "app/shared/run/app.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), 15)


def bytes_sent(logs: str) -> list[int]:
    return [int(b) for b in re.findall(r"sent \d+ new file contents \((\d+) bytes\)", logs)]


def test_pipeline_deploys_one_artifact_across_five_ssh_hosts(
    project: Project, ssh_testbed: Callable[..., SSHTestBed], postgres_server: PostgresServer
) -> None:
    bed = ssh_testbed(5)
    try:
        databases = {env: postgres_server.create_database(f"fleet_{env}_{os.getpid()}") for env in ("staging", "production")}
        use_fleet(project, bed, {"staging": STAGING, "production": PRODUCTION}, databases=databases)
        waiting = project.json("run")
        assert waiting["state"] == "waiting", waiting
        project.slipway("approve", str(waiting["id"]), "--reason", "fleet looks good")
        status = project.status()
        digest = status["production"]["artifact_digest"]
        assert {e["artifact_digest"] for e in status.values()} == {digest}
        assert [h["name"] for h in status["production"]["hosts"]] == ["production-1", "production-2", "production-3"]
        release_one = status["production"]["release"]
        for index in STAGING + PRODUCTION:
            host = bed.hosts[index]
            env = "staging" if index in STAGING else "production"
            assert health(host.address, project.ports[env])["commit"] == status[env]["commit"]
            current = host_path(bed, index, "app/current")
            assert os.readlink(current) == f"releases/{status[env]['release']}"

        # A release that changes one small file sends only that file's contents to each host.
        project.edit("app/store.py", "oldest first", "oldest first (v2)")
        project.commit("v2: one file changed")
        waiting = project.json("run")
        logs = project.slipway("logs", str(waiting["id"]), "--stage", "deploy-staging").stdout
        sent = bytes_sent(logs)
        assert len(sent) == 2 and all(0 < b < 3000 for b in sent), logs
        project.slipway("approve", str(waiting["id"]), "--reason", "v2")
        release_two = project.status()["production"]["release"]
        assert release_two != release_one

        # A rollback is one connection per host: it looks (current, and is the release still there?),
        # switches and restarts on the same connection.
        logins = [bed.accepted_logins(i) for i in PRODUCTION]
        project.slipway("rollback", "production", "--reason", "back to v1")
        assert [bed.accepted_logins(i) - n for i, n in zip(PRODUCTION, logins, strict=True)] == [1, 1, 1]
        after = project.status()["production"]
        assert after["release"] == release_one
        assert {h["release"] for h in after["hosts"]} == {release_one}
        for index in PRODUCTION:
            assert os.readlink(host_path(bed, index, "app/current")) == f"releases/{release_one}"
            assert health(bed.hosts[index].address, project.ports["production"])["release"] == release_one

        # A release one host no longer has (pruned) refuses the whole rollback before any host changes.
        shutil.rmtree(host_path(bed, PRODUCTION[1], f"app/releases/{release_two}"))
        refused = project.slipway("rollback", "production", "--to", release_two, check=False)
        assert refused.returncode == 9, refused.stderr
        assert f"release {release_two} is no longer installed on production-2" in refused.stderr
        assert {h["release"] for h in project.status()["production"]["hosts"]} == {release_one}
        for index in PRODUCTION:
            assert os.readlink(host_path(bed, index, "app/current")) == f"releases/{release_one}"
        [latest, *_] = project.json("deployments", "production")
        assert (latest["kind"], latest["state"]) == ("rollback", "failed")
        assert "no longer installed" in latest["reason"]
    finally:
        stop_fleet_apps(project, bed)
