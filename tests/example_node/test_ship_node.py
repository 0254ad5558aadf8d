"""Issue 15, done when: docs/ gain a "Ship a Node app" guide, a complete, tested slipway.yml, with a dependency
recipe for Node. examples/node-app goes through its whole pipeline from a fresh copy, as docs/ship-node.md
tells it: production is two SSH hosts of the test bed, each running ``node server.js`` under the supervisord
Slipway starts there, behind a real nginx that has no config for the app until ``slipway router bootstrap``
writes it.

Release 1 runs ``npm ci`` in the build (a dependency-cache miss), its unit tests with ``node --test`` on
the artifact, and goes through the approval; release 2 changes only the app: the build restores
node_modules from the layer (a hit, no npm), and nginx answers with the new code. Without network: npm runs
``--offline`` with an empty cache of its own; the one dependency is a tarball inside the example.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.example_flask.test_ship_flask import bootstrap_and_start, build_of, commit_on_the_test_bed, through_approval
from tests.fleet.conftest import host_path
from tests.host_services.conftest import health, shutdown_supervisors
from tests.init.conftest import offline_env
from tests.support.nginx import NginxServer
from tests.support.pytest_ssh import BedFactory
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(300)

EXAMPLE = "examples/node-app"
GROUP = "node-app"


@pytest.fixture
def fresh_clone(tmp_path: Path, repo_root: Path, ssh_testbed: BedFactory) -> Iterator[tuple[Project, SSHTestBed, NginxServer]]:
    """The example copied to tmp and committed, its environments on the bed, nginx prepared but not started."""
    bed = ssh_testbed(2)
    nginx = NginxServer([], group=GROUP, worker_processes=1)
    nginx.prepare(upstream=False)  # the site proxies to slipway_node-app, which nothing defines yet
    root = tmp_path / "node-app"
    shutil.copytree(repo_root / EXAMPLE, root, ignore=shutil.ignore_patterns("node_modules", ".slipway"))
    proj = Project(root=root, env={**offline_env(tmp_path / "no-pip"), "npm_config_cache": str(tmp_path / "npm")})
    commit_on_the_test_bed(proj, bed, nginx)
    try:
        yield proj, bed, nginx
    finally:
        nginx.stop()
        shutdown_supervisors([root])  # dev's; the bed's hosts stop with every process they ran


def test_node_app_from_a_fresh_clone_to_two_hosts_behind_nginx(
    fresh_clone: tuple[Project, SSHTestBed, NginxServer],
) -> None:
    proj, bed, nginx = fresh_clone
    bootstrap_and_start(proj, nginx)  # nginx cannot start until 'slipway router bootstrap' writes its upstream

    first = through_approval(proj)
    miss_seconds, miss_log = build_of(proj, first)
    assert "dependency cache miss" in miss_log and "added 1 package" in miss_log, miss_log  # npm ci ran
    # node_modules is in no commit (.gitignore): the tests ran with the artifact's, and the hosts got it
    tests = proj.slipway("logs", str(first["id"]), "--stage", "unit-tests").stdout
    # node --test reports as tap ("# pass 4") when its output is not a terminal; node 22 and later as spec
    assert re.search(r"[#\u2139] pass 4$", tests, re.M) and re.search(r"[#\u2139] fail 0$", tests, re.M), tests
    for i in (0, 1):
        marker = host_path(bed, i, "app/current/node_modules/release-marker/package.json")
        assert json.loads(marker.read_text())["version"] == "1.0.0"
    assert health(nginx.url)["commit"] == first["commit"]

    # release 2: the app alone. The lock is unchanged: node_modules comes from the layer, npm does not run.
    proj.edit("app.js", "`hello, ", "`hi, ")
    for greeting in ("ada", "world"):
        proj.edit("test/app.test.js", f'"hello, {greeting}"', f'"hi, {greeting}"')
    proj.commit("release 2: a shorter greeting")
    second = through_approval(proj)
    hit_seconds, hit_log = build_of(proj, second)
    assert "dependency cache hit" in hit_log and "added 1 package" not in hit_log, hit_log
    assert health(nginx.url)["commit"] == second["commit"]
    assert get_json(f"{nginx.url}/?name=slipway") == {"message": "hi, slipway"}
    port = proj_port(proj)
    assert [health(f"http://{h.address}:{port}")["commit"] for h in bed.hosts] == [second["commit"]] * 2
    print(f"\nbuild: cache miss {miss_seconds:.2f} s, hit {hit_seconds:.2f} s")


def test_the_lock_pins_the_dependency_tarball_made_from_its_source(repo_root: Path) -> None:
    """package-lock.json's integrity is the committed tarball's sha512, and the tarball holds the files of
    packages/release-marker: an edit there that is not packed and installed again fails here."""
    example = repo_root / EXAMPLE
    lock = json.loads((example / "package-lock.json").read_text())["packages"]["node_modules/release-marker"]
    tarball = example / lock["resolved"].removeprefix("file:")
    assert lock["integrity"] == "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    source = example / "packages/release-marker"
    with tarfile.open(tarball) as packed:
        files = {m.name.removeprefix("package/"): packed.extractfile(m).read() for m in packed.getmembers() if m.isfile()}
    assert files == {p.name: p.read_bytes() for p in source.iterdir()}, "npm pack packages/release-marker again"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def proj_port(proj: Project) -> int:
    return int(yaml.safe_load((proj.root / "slipway.yml").read_text())["environments"]["production"]["vars"]["port"])
