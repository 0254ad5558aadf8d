"""Issue 15, done when: examples/flask-app (Flask, the SQLAlchemy ORM, two Alembic revisions, gunicorn)
goes through its whole pipeline from a fresh copy, as docs/ship-python.md tells it: production is two SSH
hosts of the test bed, each running gunicorn under the supervisord Slipway starts there, behind a real
nginx that has no config for the app until ``slipway router bootstrap`` writes it; PostgreSQL is real.

Release 1 goes through the unit tests (run on the artifact) and the approval; release 2 adds a
dependency (a dependency-cache miss: a new wheelhouse), release 3 changes only the app (a hit: the layer
is restored, and its build is faster); a paced load through nginx sees no failed request during release
3's rolling deployment nor during ``slipway rollback production``. Without network: the build's pip reads
a mirror in a directory (PIP_FIND_LINKS), the hosts install from the artifact's wheels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Project
from tests.fleet.conftest import host_path, ssh_target
from tests.host_services.conftest import health, shutdown_supervisors
from tests.init.conftest import offline_env
from tests.support.load import Load, LoadResult
from tests.support.nginx import NginxServer
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.pytest_ssh import BedFactory
from tests.support.sshbed import SSHTestBed

pytestmark = [pytest.mark.timeout(420), pytest.mark.postgres]

EXAMPLE = "examples/flask-app"
GROUP = "flask-app"


def on_the_test_bed(config: dict[str, Any], bed: SSHTestBed, nginx: NginxServer) -> dict[str, Any]:
    """The example's slipway.yml with its placeholders made real: free ports, the bed's hosts, our nginx."""
    config["environments"]["dev"]["vars"]["port"] = free_port()
    production = config["environments"]["production"]
    production["vars"]["port"] = free_port()
    production["url"] = nginx.url
    production["targets"] = [ssh_target(bed, i, f"web-{i + 1}") for i in (0, 1)]
    production["router"].update(conf_dir=str(nginx.conf_dir), config=str(nginx.config), prefix=str(nginx.root),
                                pid_file=str(nginx.pid_file), nginx=nginx.binary, drain_timeout=5)
    return config


@pytest.fixture
def fresh_clone(tmp_path: Path, repo_root: Path, mirror: Path, postgres_server: PostgresServer,
                ssh_testbed: BedFactory) -> Iterator[tuple[Project, SSHTestBed, NginxServer]]:
    """The example copied to tmp and committed, its environments on the bed, nginx prepared but not started."""
    bed = ssh_testbed(2)
    nginx = NginxServer([], group=GROUP, worker_processes=1)
    nginx.prepare(upstream=False)  # the site proxies to slipway_flask-app, which nothing defines yet
    root = tmp_path / "flask-app"
    shutil.copytree(repo_root / EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".venv", ".slipway"))
    proj = Project(root=root, env=offline_env(mirror))
    for env in ("dev", "production"):
        proj.env[f"FLASK_APP_{env.upper()}_DATABASE_URL"] = postgres_server.create_database(
            f"flask_{env}_{tmp_path.name[-12:].lower().replace('-', '_')}")
    commit_on_the_test_bed(proj, bed, nginx)
    try:
        yield proj, bed, nginx
    finally:
        nginx.stop()
        shutdown_supervisors([root])  # dev's; the bed's hosts stop with every process they ran


def commit_on_the_test_bed(proj: Project, bed: SSHTestBed, nginx: NginxServer) -> None:
    """The copy's slipway.yml made to name the bed and nginx (on_the_test_bed), committed in a new repository."""
    config = on_the_test_bed(yaml.safe_load((proj.root / "slipway.yml").read_text()), bed, nginx)
    (proj.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=proj.root, check=True, env=proj.env)
    proj.commit(f"{config['name']}: release 1")


def bootstrap_and_start(proj: Project, nginx: NginxServer) -> None:
    """nginx cannot start until ``slipway router bootstrap production`` writes its upstream; then it starts."""
    assert f'host not found in upstream "slipway_{nginx.group}"' in nginx.check().stderr
    boot = proj.slipway("router", "bootstrap", "production")
    assert "placeholder marked down" in boot.stdout, boot.stdout
    nginx.start(prepared=True)


def through_approval(proj: Project, *, during: Callable[[], None] | None = None) -> dict[str, Any]:
    """``slipway run`` to the gate, then approve (``during``: started right before the approval): the run."""
    parked = proj.json("run")
    assert parked["state"] == "waiting", parked
    if during:
        during()
    done: dict[str, Any] = json.loads(
        proj.slipway("approve", str(parked["id"]), "--reason", "dev looks fine", "--json", timeout=300).stdout)
    assert done["state"] == "succeeded", done
    return done


def build_of(proj: Project, run: dict[str, Any]) -> tuple[float, str]:
    """The build stage's duration and log."""
    [build] = [s for s in run["stages"] if s["name"] == "build"]
    return float(build["duration"]), proj.slipway("logs", str(run["id"]), "--stage", "build").stdout


def test_flask_app_from_a_fresh_clone_to_two_hosts_behind_nginx(
    fresh_clone: tuple[Project, SSHTestBed, NginxServer],
) -> None:
    proj, bed, nginx = fresh_clone
    bootstrap_and_start(proj, nginx)

    first = through_approval(proj)
    # wheels/ is in no commit (.gitignore): only the artifact has it, so the tests ran with the artifact's
    tests = proj.slipway("logs", str(first["id"]), "--stage", "unit-tests").stdout
    assert re.search(r"Ran [1-9]\d* tests", tests) and "[stderr] OK" in tests, tests
    assert health(nginx.url)["commit"] == first["commit"]
    migrated = proj.slipway("migrations", "status", "production").stdout
    assert "0001" in migrated and "0002" in migrated and "pending" not in migrated, migrated

    # release 2: a new dependency. The lock changed: a new wheelhouse, and every host's venv has it.
    with (proj.root / "requirements.txt").open("a") as lock:
        lock.write("prometheus-client==0.26.0\n")
    proj.commit("release 2: prometheus-client")
    second = through_approval(proj)
    miss_seconds, miss_log = build_of(proj, second)
    assert "dependency cache miss" in miss_log, miss_log
    venvs = [venv_of(bed, i) for i in (0, 1)]
    for i, venv in enumerate(venvs):
        assert list(host_path(bed, i, venv.removeprefix("/srv/")).glob("lib/python3*/site-packages/prometheus_client"))

    # release 3: the app alone, under load through nginx; then the rollback to release 2, under load.
    proj.edit("app/__init__.py", 'jsonify(status="ok"', 'jsonify(status="ok", greeting="hello"')
    proj.commit("release 3: a greeting")
    loads: list[Load] = []
    third = through_approval(proj, during=lambda: loads.append(paced_load(nginx)))
    rolling = loads[0].stop()
    hit_seconds, hit_log = build_of(proj, third)
    assert "dependency cache hit" in hit_log, hit_log
    answer = health(nginx.url)
    assert (answer["commit"], answer["greeting"]) == (third["commit"], "hello"), answer
    assert [venv_of(bed, i) for i in (0, 1)] == venvs  # the same lock: each host links the venv it made

    load = paced_load(nginx)
    proj.slipway("rollback", "production", "--reason", "back to release 2")
    rollback = load.stop()
    assert [health(f"http://{h.address}:{proj_port(proj)}")["commit"] for h in bed.hosts] == [second["commit"]] * 2
    for name, result in (("rolling", rolling), ("rollback", rollback)):
        assert result.requests >= 400 and result.failures == 0, (name, result.requests, result.failures, result.errors)
    assert hit_seconds < miss_seconds, (hit_seconds, miss_seconds)
    print(f"\nbuild: cache miss {miss_seconds:.1f} s, hit {hit_seconds:.1f} s (x{miss_seconds / hit_seconds:.1f}); "
          f"rolling {summary(rolling)}; rollback {summary(rollback)}")


def venv_of(bed: SSHTestBed, index: int) -> str:
    """The virtual environment the release that host ``index`` runs links to (bin/venv.sh)."""
    return os.readlink(host_path(bed, index, "app/current/.venv"))


def paced_load(nginx: NginxServer) -> Load:
    """Requests through nginx, one every 2.5 ms, until stopped (bounded: 120 s)."""
    return Load(f"{nginx.url}/health", workers=4, min_requests=400, time_limit=120).start()


def proj_port(proj: Project) -> int:
    return int(yaml.safe_load((proj.root / "slipway.yml").read_text())["environments"]["production"]["vars"]["port"])


def summary(result: LoadResult) -> str:
    return f"{result.requests} requests, {result.failures} failed, p99 {result.percentile(99):.0f} ms"
