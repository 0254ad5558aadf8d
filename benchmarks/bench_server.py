"""``slipway serve`` over a big store: 10,000 runs and 200,000 step records in PostgreSQL.

The store is filled with bulk inserts shaped like real runs of the example pipeline (9 stages, 20 steps of
about 300 bytes of output each, a deployment per deploy stage with its host row, an approval each). A real
``slipway serve`` (uvicorn, its own process) answers a bounded client on loopback: one request at a time,
WARMUP requests per URL first, then REQUESTS per URL in interleaved rounds. Server time is the server's own
``Server-Timing`` header (the time from the request's arrival to its response); the client's wall time is
shown beside it. The baseline, measured in the same run on the same server, is ``/healthz``, which reads
nothing. Pages of the web UI and their JSON API counterparts are both measured.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.common import GIT_ENV, git_project, table

ROOT = Path(__file__).resolve().parents[1]
SLIPWAY = str(Path(sys.executable).with_name("slipway"))
RUNS = 10_000
STEPS_PER_RUN = 20
ROUNDS = 3
REQUESTS = 60  # per URL per round
WARMUP = 10
TARGET_P95_MS = 100.0
STAGES = [
    ("build", "build", None), ("unit-tests", "test", None), ("deploy-dev", "deploy", "dev"),
    ("acceptance-dev", "acceptance", "dev"), ("deploy-staging", "deploy", "staging"),
    ("acceptance-staging", "acceptance", "staging"), ("approve-production", "approval", None),
    ("deploy-production", "deploy", "production"), ("smoke-production", "post-deploy", "production"),
]  # fmt: skip
LOG = ("line of output from a hook, as a build or a restart prints it\n" * 5)[:300]


def fill(url: str, config_text: str) -> None:
    """Bulk-insert RUNS runs with their stages, steps, deployments, approvals and audit entries."""
    from sqlalchemy import insert

    from slipway.store import schema as t
    from slipway.store.repository import Store

    store = Store(url)  # creates the schema
    rng = random.Random(7)
    now = time.time() - RUNS * 600
    with store.engine.begin() as conn:
        runs, stages, steps, deployments, hosts, approvals, audit = [], [], [], [], [], [], []
        stage_id = step_id = deployment_id = 0
        for run_id in range(1, RUNS + 1):
            created = now + run_id * 600
            commit = f"{rng.getrandbits(160):040x}"
            digest = f"sha256:{rng.getrandbits(256):064x}"
            runs.append(dict(id=run_id, project="webapp", kind="pipeline", commit=commit, state="succeeded",
                             artifact_digest=digest, triggered_by="bench", created_at=created,
                             finished_at=created + 300, config_text=config_text, config_path="slipway.yml", error=None))
            per_stage = [STEPS_PER_RUN // len(STAGES)] * len(STAGES)
            per_stage[0] += STEPS_PER_RUN - sum(per_stage)
            for idx, (name, kind, env) in enumerate(STAGES):
                stage_id += 1
                start = created + idx * 30
                stages.append(dict(id=stage_id, run_id=run_id, idx=idx, name=name, kind=kind, environment=env,
                                   state="succeeded", started_at=start, finished_at=start + 25, error=None))
                for n in range(per_stage[idx]):
                    step_id += 1
                    steps.append(dict(id=step_id, stage_id=stage_id, name=f"{name} step {n}", host=f"{env or 'local'}-1",
                                      command="sh bin/restart.sh 8080", state="succeeded", exit_code=0,
                                      started_at=start + n, finished_at=start + n + 1, log=LOG))
                if kind == "deploy":
                    deployment_id += 1
                    release = f"r{run_id:05d}"
                    deployments.append(dict(id=deployment_id, environment=env, kind="deploy", run_id=run_id,
                                            artifact_digest=digest, release_id=release, state="succeeded",
                                            started_at=start, finished_at=start + 25, deployed_by="bench",
                                            reason=None, strategy="rolling"))
                    hosts.append(dict(deployment_id=deployment_id, host=f"{env}-1", from_release=None,
                                      to_release=release, state="succeeded", error=None, duration=20.0))
                if kind == "approval":
                    approvals.append(dict(run_id=run_id, stage_name=name, decision="approved", by="bench",
                                          reason="bench", at=start))
                    audit.append(dict(at=start, actor="bench", action="approval.approved", subject=f"run {run_id}", detail="{}"))
            if len(steps) >= 20_000 or run_id == RUNS:
                for table_, rows in ((t.Run, runs), (t.Stage, stages), (t.Step, steps), (t.Deployment, deployments),
                                     (t.DeploymentHost, hosts), (t.Approval, approvals), (t.Audit, audit)):  # fmt: skip
                    if rows:
                        conn.execute(insert(table_), rows)
                    rows.clear()
        for env in ("dev", "staging", "production"):
            conn.execute(insert(t.HostRelease), [dict(environment=env, host=f"{env}-1", release_id=f"r{RUNS:05d}",
                         artifact_digest=digest, commit=commit, since=created, deployment_id=deployment_id, run_id=RUNS)])
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:  # as autovacuum would soon after a real load
            from sqlalchemy import text

            for name in ("runs", "stages", "steps", "deployments", "deployment_hosts", "approvals", "audit_log"):
                conn.execute(text(f"ANALYZE {name}"))
    store.close()


def serve(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``slipway serve`` and wait for /healthz."""
    from tests.e2e.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([SLIPWAY, "serve", "--port", str(port)], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("slipway serve did not start")


def measure(client: httpx.Client, paths: dict[str, str]) -> dict[str, list[tuple[list[float], list[float]]]]:
    """Per path and round: (server ms, client ms) samples, the paths interleaved."""
    for path in paths.values():
        for _ in range(WARMUP):
            client.get(path).raise_for_status()
    out: dict[str, list[tuple[list[float], list[float]]]] = {name: [] for name in paths}
    for _ in range(ROUNDS):
        samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in paths}
        for _ in range(REQUESTS):
            for name, path in paths.items():
                start = time.perf_counter()
                response = client.get(path)
                wall = (time.perf_counter() - start) * 1000
                response.raise_for_status()
                server = float(response.headers["server-timing"].split("dur=")[1])
                samples[name][0].append(server)
                samples[name][1].append(wall)
        for name in paths:
            out[name].append(samples[name])
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[94]


def run() -> str:
    from tests.support.postgres import PostgresServer

    from slipway.services import accounts
    from slipway.store.repository import Store

    with PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="slipway-bench-server-") as tmp:
        pg.create_database("bench")
        url = pg.url_for("bench")
        root = Path(tmp) / "webapp"
        shutil.copytree(ROOT / "examples/webapp", root, ignore=shutil.ignore_patterns(".slipway"))
        git_project(root, {})
        started = time.perf_counter()
        fill(url, (root / "slipway.yml").read_text())
        filled = time.perf_counter() - started
        store = Store(url)
        accounts.add_user(store, "bench", "bench password for the benchmark", roles=(("viewer", "*"),), actor="bench")
        token = accounts.create_token(store, "bench", "bench", actor="bench")
        store.close()
        env = {**os.environ, **GIT_ENV, "SLIPWAY_DATABASE_URL": url}
        proc, base = serve(root, env)
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
                home = client.get("/").status_code
                paths = {"/healthz (baseline)": "/healthz"}
                if home == 200:
                    paths |= {
                        "home page `/`": "/",
                        f"run page `/projects/webapp/runs/{RUNS // 2}`": f"/projects/webapp/runs/{RUNS // 2}",
                        "deployments page `/projects/webapp/environments/production`": "/projects/webapp/environments/production",
                    }
                paths |= {
                    "API status": "/api/projects/webapp/status",
                    "API runs (page 1 of 500)": "/api/projects/webapp/runs?limit=20",
                    "API runs (page 400 of 500)": "/api/projects/webapp/runs?limit=20&offset=8000",
                    f"API run {RUNS // 2}": f"/api/projects/webapp/runs/{RUNS // 2}",
                    f"API logs of run {RUNS // 2}": f"/api/projects/webapp/runs/{RUNS // 2}/logs",
                    "API deployments of production": "/api/projects/webapp/deployments?environment=production",
                }
                results = measure(client, paths)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        load = Path("/proc/loadavg").read_text().split()[:3]
    base_p95 = [p95(s) for s, _ in results["/healthz (baseline)"]]
    rows = []
    for name, rounds in results.items():
        server = [p95(s) for s, _ in rounds]
        wall = [p95(w) for _, w in rounds]
        ratio = [a / b for a, b in zip(server, base_p95, strict=True)]
        verdict = "" if "baseline" in name else ("yes" if max(server) < TARGET_P95_MS else "**no**")
        rows.append([
            name, f"{statistics.median(server):.1f} ({min(server):.1f}-{max(server):.1f})",
            f"{statistics.median(wall):.1f}", f"{statistics.median(ratio):.1f}x ({min(ratio):.1f}-{max(ratio):.1f})", verdict,
        ])  # fmt: skip
    return "\n".join([
        "## slipway serve over 10,000 runs (PostgreSQL)",
        "",
        f"{RUNS:,} runs, {RUNS * len(STAGES):,} stages, {RUNS * STEPS_PER_RUN:,} step records (about 300 bytes of output each) "
        f"and {RUNS * 3:,} deployments, bulk-inserted into a fresh PostgreSQL in {filled:.0f} s. One client on loopback, "
        f"one request at a time: {WARMUP} warm-up requests per URL, then {ROUNDS} rounds of {REQUESTS} requests per URL, "
        "the URLs interleaved. Server time is the server's `Server-Timing` header; p95 per round, the median of the rounds "
        f"and their range. Target: p95 under {TARGET_P95_MS:.0f} ms for the home, run and deployments pages. "
        f"Load average during the run: {' '.join(load)}.",
        "",
        table(["URL", "server p95 ms (range)", "client p95 ms", "ratio to /healthz p95 (range)", f"p95 < {TARGET_P95_MS:.0f} ms"], rows),
        "",
        "`python benchmarks/run.py server` reruns it.",
    ])  # fmt: skip


if __name__ == "__main__":
    print(run())
