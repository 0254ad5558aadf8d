"""Zero downtime: requests through nginx onto 3 SSH hosts while Slipway deploys the example app.

The same setup as tests/zero_downtime: the example app on 3 OpenSSH test-bed hosts behind a private,
real nginx, ``rolling`` with batch size 1, a circuit breaker of 2 failed hosts. 8 threads send GET
/health through nginx, each request on a new connection, until the deployment ended and at least 10,000
requests were sent (bounded at 90 s). Measured: without a deployment (the baseline), during a rolling
deployment, during a release whose health check fails (one host reverted alone, the second trips
the breaker, every updated host is rolled back), and with ``blue_green`` (each slot's app on its own
port) during a deployment to the idle slot with its switch and a ``slipway rollback`` that switches back.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.conftest import GIT_ENV, Project
from tests.support.load import Load, LoadResult
from tests.support.ports import free_port
from tests.support.sshbed import SSHTestBed
from tests.zero_downtime.support import HOSTS, behind_nginx, blue_green

from benchmarks.common import table

ROOT = Path(__file__).resolve().parents[1]
MIN_REQUESTS = 10_000


def _project(tmp: Path) -> Project:
    root = tmp / "webapp"
    shutil.copytree(ROOT / "examples/webapp", root)
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "bench"}
    env.pop("SLIPWAY_DATABASE_URL", None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    proj = Project(root=root, env=env)
    text = (root / "slipway.yml").read_text()
    for port in re.findall(r"vars: \{port: (\d+)\}", text):
        text = text.replace(f"vars: {{port: {port}}}", f"vars: {{port: {free_port()}}}")
    (root / "slipway.yml").write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    proj.commit("webapp: first release")
    return proj


def _load(url: str) -> Load:
    return Load(url, workers=8, min_requests=MIN_REQUESTS, time_limit=90, rate=None).start()


def measure() -> dict[str, LoadResult]:
    """The three loads: baseline, rolling, breaker."""
    out: dict[str, LoadResult] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-bench-zd-") as tmp_name:
        tmp = Path(tmp_name)
        proj = _project(tmp)
        with SSHTestBed(tmp / "bed", HOSTS, disk_size=None) as bed:
            nginx = behind_nginx(
                proj,
                bed,
                strategy={"kind": "rolling", "batch_size": 1},
                breaker={"threshold": 2, "min_threshold": 1, "auto_rollback": True},
            )
            try:
                proj.slipway("run")
                out["no deployment"] = _load(f"{nginx.url}/health").stop()
                proj.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
                proj.commit("release 2")
                load = _load(f"{nginx.url}/health")
                proj.slipway("run")
                out["rolling deployment (3 hosts, batch size 1)"] = load.stop()
                proj.edit("app/server.py", "self._send(200, {", "self._send(503, {")
                proj.commit("release 3: unhealthy")
                load = _load(f"{nginx.url}/health")
                failed = proj.slipway("run", check=False)
                assert "circuit breaker tripped" in failed.stderr, failed.stderr
                out["failing release: breaker trips, rollback"] = load.stop()
            finally:
                nginx.stop()
                _stop_apps(bed)
        out["blue/green: switch to the new slot and back"] = _blue_green(tmp)
    return out


def _blue_green(tmp: Path) -> LoadResult:
    """A blue/green deployment (and its switch) then a rollback (a switch back), under one load."""
    proj = _project(tmp / "bg")
    with SSHTestBed(tmp / "bg-bed", HOSTS, disk_size=None) as bed:
        blue = free_port()
        nginx = behind_nginx(proj, bed, strategy=blue_green((blue, free_port())), port=blue)
        try:
            proj.slipway("run")
            proj.edit("app/server.py", '"status": "ok"', '"status": "ok", "v": 2')
            proj.commit("release 2")
            load = _load(f"{nginx.url}/health")
            proj.slipway("run")
            proj.slipway("rollback", "production", "--reason", "benchmark: switch back")
            return load.stop()
        finally:
            nginx.stop()
            _stop_apps(bed)


def _stop_apps(bed: SSHTestBed) -> None:
    for host in bed.hosts:
        for pid in [host.host_dir / "app/shared/run/app.pid", *host.host_dir.glob("app/slots/*/shared/run/app.pid")]:
            if pid.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid.read_text()), 15)


def run() -> str:
    """Markdown section with the figures."""
    results = measure()
    base = results["no deployment"].percentile(99)
    rows = [
        [
            name,
            f"{r.requests:,}",
            str(r.failures),
            f"{r.duration:.1f} s",
            f"{r.requests / r.duration:,.0f}",
            f"{r.percentile(50):.1f} ms",
            f"{r.percentile(99):.1f} ms",
            f"{r.percentile(99) / base:.2f}x" if base else "-",
        ]
        for name, r in results.items()
    ]
    return (
        "## Zero downtime through nginx\n\n"
        f"{__doc__.strip()}\n\n"
        + table(["load during", "requests", "failed", "time", "req/s", "p50", "p99", "p99 vs baseline"], rows)
        + "\n"
    )
