"""``slipway rollback`` behind a real nginx: 2 SSH hosts of the test bed, ``rolling, batch_size: 1``.

The reported case: the rollback drained both hosts at once, nginx refused to leave the group empty, the
command failed with exit 6, web-1 stayed down in nginx with nothing in ``slipway status`` to show it, and
``slipway logs`` printed "no steps recorded". Here the rollback goes host by host under a load through
nginx (none of its requests may fail), then a rollback meets a real router error half-way (nginx's
reload fails once, armed by an activate hook on web-1): the command fails with that error, and every host
is back in rotation, in the router's file and in what nginx really routes to.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.rollback.support import flaky_nginx, router_state
from tests.support.load import Load
from tests.support.nginx import NginxServer
from tests.support.sshbed import SSHTestBed
from tests.zero_downtime.support import behind_nginx

pytestmark = pytest.mark.timeout(300)

HOSTS = 2
MIN_REQUESTS = 1_500  # paced at 400 per second (tests/support/load.py)


def commit_at(url: str) -> str:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
        return str(json.loads(resp.read())["commit"])


def commits_through(nginx: NginxServer, count: int = 40) -> set[str]:
    """The commits nginx's answers come from: one per host it really routes to."""
    return {commit_at(nginx.url) for _ in range(count)}


@pytest.fixture
def fleet(project: Project, ssh_testbed: Callable[..., SSHTestBed]) -> Iterator[tuple[Project, SSHTestBed]]:
    yield project, ssh_testbed(HOSTS)


def two_releases(project: Project) -> tuple[str, str]:
    """Release 1, then release 2, each deployed to both hosts by a run."""
    first = project.json("run")
    assert first["state"] == "succeeded", first
    one = first["commit"]
    project.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
    project.commit("release 2")
    second = project.json("run")
    assert second["state"] == "succeeded", second
    return one, second["commit"]


def rotation(project: Project) -> dict[str, Any]:
    production = project.status()["production"]
    return {"router": production["router"], **{h["name"]: h["router"] for h in production["hosts"]}}


def test_rollback_goes_host_by_host_through_nginx_under_load(fleet: tuple[Project, SSHTestBed]) -> None:
    project, bed = fleet
    nginx = behind_nginx(project, bed, strategy={"kind": "rolling", "batch_size": 1}, hosts=HOSTS)
    try:
        one, two = two_releases(project)
        assert commits_through(nginx) == {two}

        load = Load(f"{nginx.url}/health", workers=6, min_requests=MIN_REQUESTS, time_limit=120).start()
        proc = project.slipway("rollback", "production", "--reason", "release 2 is slow", "--json", check=False)
        result = load.stop()
        print(f"\nrollback: {result.requests} requests, {result.failures} failed, p99 {result.percentile(99):.1f} ms")
        assert proc.returncode == 0, proc.stderr
        run = json.loads(proc.stdout)
        assert run["kind"] == "rollback" and run["state"] == "succeeded"
        assert result.requests >= MIN_REQUESTS and result.failures == 0, (result.failures, result.errors)

        assert commits_through(nginx) == {one}
        assert not any(b.down for b in router_state(nginx.conf_dir, nginx.binary).backends)
        assert rotation(project) == {"router": {"group": "app", "error": None}, "web-1": "in rotation",
                                     "web-2": "in rotation"}
        # one host at a time: web-1 out, back, ready, in; then web-2
        logs = project.slipway("logs", str(run["id"])).stdout
        assert "no steps recorded" not in logs
        order = re.findall(r"\[(web-\d)\] (router: \w+|readiness|activate: switch-current)", logs)
        assert order == [
            (host, step)
            for host in ("web-1", "web-2")
            for step in ("router: drain", "activate: switch-current", "readiness", "router: enable")
        ], logs
        [latest, *_] = project.json("deployments", "production")
        assert latest["kind"] == "rollback" and latest["strategy"] == "rolling" and latest["state"] == "succeeded"
    finally:
        nginx.stop()
        project.stop_apps()


def arm_reload_fault(project: Project, nginx: NginxServer, directory: Path) -> Path:
    """Drive nginx through a wrapper whose reload fails once the file ARM is moved into place by a hook."""
    wrapper, fault = flaky_nginx(directory, nginx.binary)
    arm = directory / "arm"
    config = yaml.safe_load((project.root / "slipway.yml").read_text())
    production = config["environments"]["production"]
    production["router"]["nginx"] = str(wrapper)
    # the activate hook of the first host that runs it arms the fault: that host's way back into rotation fails
    config["deploy"]["hooks"]["activate"].append(f"if [ -e {arm} ]; then mv {arm} {fault}; fi")
    (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("nginx through a wrapper whose reload can be made to fail")
    return arm


def test_a_router_error_in_the_middle_of_a_rollback_leaves_every_host_in_rotation(
    fleet: tuple[Project, SSHTestBed], tmp_path: Path
) -> None:
    project, bed = fleet
    nginx = behind_nginx(project, bed, strategy={"kind": "rolling", "batch_size": 1}, hosts=HOSTS)
    try:
        arm = arm_reload_fault(project, nginx, tmp_path)
        one, two = two_releases(project)
        arm.write_text("1")  # the next reload after web-1's activate hooks fails: putting web-1 back in

        load = Load(f"{nginx.url}/health", workers=6, min_requests=MIN_REQUESTS, time_limit=120).start()
        proc = project.slipway("rollback", "production", "--reason", "release 2 is slow", check=False)
        result = load.stop()
        assert proc.returncode == 1, (proc.stdout, proc.stderr)  # CommandFailed: the nginx command failed
        assert "nginx reload failed" in proc.stderr and "injected by the test" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert result.failures == 0, (result.failures, result.errors)

        # web-1 went back to release 1 and web-2 was not touched; nginx routes to both
        assert not any(b.down for b in router_state(nginx.conf_dir, nginx.binary).backends)
        assert commits_through(nginx, 60) == {one, two}
        assert rotation(project) == {"router": {"group": "app", "error": None}, "web-1": "in rotation",
                                     "web-2": "in rotation"}
        [run_id] = [r["id"] for r in project.json("history") if r["kind"] == "rollback"]
        logs = project.slipway("logs", str(run_id)).stdout
        assert "[web-1] router: drain" in logs and "injected by the test" in logs, logs
        assert "[web-2] router" not in logs
    finally:
        nginx.stop()
        project.stop_apps()


def test_a_rollback_that_fails_before_any_step_does_not_point_at_empty_logs(
    fleet: tuple[Project, SSHTestBed],
) -> None:
    project, bed = fleet
    nginx = behind_nginx(project, bed, strategy={"kind": "rolling", "batch_size": 1}, hosts=HOSTS)
    try:
        two_releases(project)
        bed.kill(1)  # web-2 does not answer: the rollback stops before it touches any host
        proc = project.slipway("rollback", "production", "--reason", "release 2 is slow", check=False)
        assert proc.returncode == 5, proc.stderr
        assert "could not reach" in proc.stderr and "web-2" in proc.stderr, proc.stderr
        [run_id] = [r["id"] for r in project.json("history") if r["kind"] == "rollback"]
        logs = project.slipway("logs", str(run_id)).stdout
        # the hint names 'slipway logs' only when that prints the steps
        assert ("slipway logs" in proc.stderr) == ("no steps recorded" not in logs), (proc.stderr, logs)
        # nothing was drained (web-2's processes died with its host: nginx's own health is not Slipway's)
        assert rotation(project) == {"router": {"group": "app", "error": None}, "web-1": "in rotation",
                                     "web-2": "in rotation"}
    finally:
        nginx.stop()
        project.stop_apps()
