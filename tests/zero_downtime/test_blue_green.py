"""Zero downtime, scenario (b): a blue/green switch and back under load through nginx onto 3 SSH hosts.

Release 1 goes to slot blue (port A on every host), release 2 to slot green (port B) and the router
switches to it; ``slipway rollback`` switches back to blue, which kept running. A request every 2.5 ms
(one connection each, at least 2,000) go through a real nginx across both switches, and none may fail. Then a release
whose health check fails goes to the idle slot: it never takes traffic, and the idle slot goes back to
the release it held.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.support.load import Load
from tests.support.ports import free_port
from tests.support.sshbed import SSHTestBed
from tests.zero_downtime.support import HOSTS, behind_nginx, blue_green

pytestmark = pytest.mark.timeout(240)

MIN_REQUESTS = 2_000  # paced at 400 per second (tests/support/load.py): at least 5 s of load


def commit_at(url: str) -> str:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
        return str(json.loads(resp.read())["commit"])


def slot_commits(bed: SSHTestBed, port: int) -> list[str]:
    return [commit_at(f"http://{bed.hosts[i].address}:{port}") for i in range(HOSTS)]


@pytest.fixture
def fleet(project: Project, ssh_testbed: Callable[..., SSHTestBed]) -> Iterator[tuple[Project, SSHTestBed]]:
    yield project, ssh_testbed(HOSTS)


def bytes_sent(logs: str) -> list[int]:
    return [int(b) for b in re.findall(r"sent \d+ new file contents \((\d+) bytes\)", logs)]


def serving(project: Project) -> dict[str, str]:
    return {h["name"]: h["release"] for h in project.status()["production"]["hosts"]}


def test_blue_green_switch_and_back_under_load(fleet: tuple[Project, SSHTestBed]) -> None:
    project, bed = fleet
    blue, green = free_port(), free_port()
    nginx = behind_nginx(project, bed, strategy=blue_green((blue, green)), port=blue)
    try:
        first_run = project.json("run")
        assert first_run["state"] == "succeeded"
        one = commit_at(nginx.url)
        assert slot_commits(bed, blue) == [one] * HOSTS
        [first] = project.json("deployments", "production")
        release_one = first["release"]

        # (b) release 2 into green and switch to it, then switch back to blue, under load
        project.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
        two = project.commit("release 2")
        seen: dict[str, object] = {}

        def switch_and_back() -> None:
            second_run = project.json("run")
            seen["deploy"], seen["run"] = second_run["state"], second_run["id"]
            seen["after switch"] = commit_at(nginx.url)
            seen["rollback"] = project.json("rollback", "production", "--reason", "switch back")["state"]

        load = Load(f"{nginx.url}/health", workers=8, min_requests=MIN_REQUESTS, time_limit=120).start()
        switch_and_back()
        result = load.stop()
        print(f"\nblue/green switch and back: {result.requests} requests, {result.failures} failed, "
              f"p99 {result.percentile(99):.1f} ms")
        second_run = seen.pop("run")
        assert seen == {"deploy": "succeeded", "after switch": two, "rollback": "succeeded"}, seen
        # Both slots share each host's object store: green's first release sends only what changed.
        full, delta = (bytes_sent(project.slipway("logs", str(r)).stdout) for r in (first_run["id"], second_run))
        assert len(full) == len(delta) == HOSTS and min(full) > 0, (full, delta)
        assert max(delta) < min(full) / 2, (full, delta)  # app/server.py alone, not the whole release
        assert result.requests >= MIN_REQUESTS and result.failures == 0, (result.failures, result.errors)
        assert commit_at(nginx.url) == one  # blue serves again
        assert slot_commits(bed, green) == [two] * HOSTS  # and green stays warm with release 2
        assert serving(project) == {f"web-{i + 1}": release_one for i in range(HOSTS)}
        back, deployed = project.json("deployments", "production")[:2]
        assert (back["kind"], back["strategy"], back["state"]) == ("rollback", "blue_green", "succeeded")
        assert {h["from"] for h in back["hosts"]} == {deployed["release"]}
        assert (deployed["kind"], deployed["strategy"]) == ("deploy", "blue_green")
        assert {h["from"] for h in deployed["hosts"]} == {release_one}
        slots = [h["slots"] for h in project.status()["production"]["hosts"]]
        assert slots == [{"blue": {"release": release_one, "serving": True},
                          "green": {"release": deployed["release"], "serving": False}}] * HOSTS

        # a release whose health check fails goes to the idle slot (green): it never takes traffic, and
        # green goes back to release 2, still warm for a switch
        project.edit("app/server.py", "self._send(200, {", "self._send(503, {")
        project.commit("release 3: unhealthy")
        load = Load(f"{nginx.url}/health", workers=2, min_requests=500, time_limit=60).start()
        failed = project.slipway("run", check=False)
        quiet = load.stop()
        assert failed.returncode == 6, failed.stderr
        assert "idle slot green; traffic stayed on blue" in failed.stderr, failed.stderr
        assert quiet.failures == 0, quiet.errors
        assert commit_at(nginx.url) == one
        assert slot_commits(bed, green) == [two] * HOSTS
        [latest, *_] = project.json("deployments", "production")
        assert (latest["state"], latest["strategy"]) == ("failed", "blue_green")
        assert all(h["state"] == "failed" for h in latest["hosts"]), latest["hosts"]
        assert "503" in " ".join(h["error"] or "" for h in latest["hosts"])
        assert serving(project) == {f"web-{i + 1}": release_one for i in range(HOSTS)}

        # A switch back runs the environment's smoke checks once the warm slot serves. One that fails
        # (release 2 lacks what this check wants) fails the rollback; traffic stays on the slot it went to.
        config = yaml.safe_load((project.root / "slipway.yml").read_text())
        config["environments"]["production"]["smoke"] = [
            {"kind": "http", "name": "wants v3", "url": "{{ environment.url }}/health", "body_contains": '"v": 3'}
        ]
        (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        smoked = project.slipway("rollback", "production", "--reason", "to green", check=False)
        assert smoked.returncode == 8, smoked.stderr
        assert commit_at(nginx.url) == two
        [back_to_green, *_] = project.json("deployments", "production")
        assert (back_to_green["kind"], back_to_green["state"]) == ("rollback", "failed")
        assert "smoke checks failed after switching back to slot green" in back_to_green["reason"]
        assert serving(project) == {f"web-{i + 1}": back_to_green["release"] for i in range(HOSTS)}
    finally:
        nginx.stop()
