"""Zero downtime, measured: continuous load through nginx while the example app is deployed to 3 SSH hosts.

Each scenario sends a request every 2.5 ms (one connection each, at least 2,000, bounded in count and time) through a
real nginx and counts every answer that is not 200: a rolling deployment, and a release whose health
check fails so that the circuit breaker trips and the hosts already updated are rolled back.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Project
from tests.support.load import Load, LoadResult
from tests.support.nginx import NginxServer
from tests.support.sshbed import SSHTestBed
from tests.zero_downtime.support import HOSTS, behind_nginx

pytestmark = pytest.mark.timeout(240)

MIN_REQUESTS = 2_000  # paced at 400 per second (tests/support/load.py): at least 5 s of load


def commit_of(bed: SSHTestBed, index: int, port: int) -> str:
    with urllib.request.urlopen(f"http://{bed.hosts[index].address}:{port}/health", timeout=5) as resp:
        return str(json.loads(resp.read())["commit"])


def under_load(nginx: NginxServer, action: Callable[[], None]) -> LoadResult:
    load = Load(f"{nginx.url}/health", workers=8, min_requests=MIN_REQUESTS, time_limit=90).start()
    action()
    return load.stop()


@pytest.fixture
def fleet(project: Project, ssh_testbed: Callable[..., SSHTestBed]) -> Iterator[tuple[Project, SSHTestBed]]:
    bed = ssh_testbed(HOSTS)
    yield project, bed


def test_rolling_then_breaker_under_load(fleet: tuple[Project, SSHTestBed]) -> None:
    project, bed = fleet
    nginx = behind_nginx(
        project,
        bed,
        strategy={"kind": "rolling", "batch_size": 1},
        breaker={"threshold": 2, "min_threshold": 1, "auto_rollback": True},
    )
    try:
        first = project.json("run")
        assert first["state"] == "succeeded", first
        port = project.ports["production"]
        one = commit_of(bed, 0, port)

        # (a) a rolling deployment of a new release
        project.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
        two = project.commit("release 2")
        outcome: dict[str, object] = {}
        rolling = under_load(nginx, lambda: outcome.update(project.json("run")))
        assert outcome["state"] == "succeeded", outcome
        assert [commit_of(bed, i, port) for i in range(HOSTS)] == [two] * HOSTS
        assert rolling.requests >= MIN_REQUESTS and rolling.failures == 0, (rolling.failures, rolling.errors)

        # (c) a release whose health check fails: the first host is reverted alone (1 < threshold 2),
        # the second trips the breaker, and every host updated goes back to release 2
        project.edit("app/server.py", "self._send(200, {", "self._send(503, {")
        project.commit("release 3: unhealthy")
        failed: dict[str, object] = {}
        tripped = under_load(nginx, lambda: failed.update({"proc": project.slipway("run", check=False)}))
        proc = failed["proc"]
        assert proc.returncode == 6, proc.stderr  # type: ignore[attr-defined]
        assert "circuit breaker tripped: 2 of 3 hosts failed" in proc.stderr  # type: ignore[attr-defined]
        assert [commit_of(bed, i, port) for i in range(HOSTS)] == [two] * HOSTS
        assert tripped.requests >= MIN_REQUESTS and tripped.failures == 0, (tripped.failures, tripped.errors)
        [latest, *_] = project.json("deployments", "production")
        assert latest["state"] == "failed" and latest["strategy"] == "rolling"
        assert latest["reason"].startswith("deployment of production failed: circuit breaker tripped: 2 of 3")
        assert {h["host"]: h["state"] for h in latest["hosts"]}["web-3"] == "failed"
        assert one != two
        print(f"\nrolling: {rolling.requests} requests, {rolling.failures} failed, p99 {rolling.percentile(99):.1f} ms")
        print(f"breaker: {tripped.requests} requests, {tripped.failures} failed, p99 {tripped.percentile(99):.1f} ms")
    finally:
        nginx.stop()
        project.stop_apps()
