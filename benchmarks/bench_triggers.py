"""Push to first stage started: a webhook against the server's poller, over real git pushes.

A real ``slipway serve`` serves a small project (a build stage and a test stage, no deploy) whose remote is a
bare repository on disk. A developer's clone commits and pushes PUSHES times in a row. With the webhook,
the bare repository's post-receive hook (examples/git-hooks/post-receive) posts a GitHub-signed delivery to
the server; with polling, the hook is removed and the server's poller (``triggers.poll_interval``) finds
the push. Latency is from just before ``git push`` starts to the ``started_at`` the store records for the
run's first stage (one machine, one clock). Each push waits for its run to end before the next, so runs
never queue behind each other, and then for a random pause of up to one polling interval (the same seeded
pauses in both ways), so that pushes do not fall at the same point of the poller's cycle each time. The
polling figures are the baseline, measured in the same run.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.bench_server import serve
from benchmarks.common import GIT_ENV, table

ROOT = Path(__file__).resolve().parents[1]
PUSHES = int(os.environ.get("BENCH_PUSHES", "50"))
POLL_INTERVAL = 2.0
SECRET = "benchmark webhook secret"
TARGET_P95 = 2.0
#: Bound on each wait (a run that never starts fails the benchmark, it does not hang it).
PATIENCE = 120.0

CONFIG = """version: 1
name: bench
artifact: {{paths: [app]}}
environments:
  dev:
    targets: [{{kind: local, name: dev-1, path: .slipway/targets/dev}}]
pipeline:
  - {{name: build, kind: build}}
  - {{name: test, kind: test, run: "test -f app/version.txt"}}
triggers:
  branch: main
  remote: origin
  webhook_secret: {{env: SLIPWAY_WEBHOOK_SECRET}}
{poll}"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}, timeout=PATIENCE).stdout.strip()  # fmt: skip


def setup(tmp: Path, *, poll: bool) -> tuple[Path, Path, Path]:
    """The served project, its bare remote (with the hook unless ``poll``) and a developer's clone."""
    project = tmp / "project"
    (project / "app").mkdir(parents=True)
    (project / "app/version.txt").write_text("0\n")
    (project / "slipway.yml").write_text(CONFIG.format(poll=f"  poll_interval: {POLL_INTERVAL}\n" if poll else ""))
    git(tmp, "init", "-q", "-b", "main", str(project))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    bare = tmp / "origin.git"
    git(tmp, "clone", "-q", "--bare", str(project), str(bare))
    git(project, "remote", "add", "origin", str(bare))
    dev = tmp / "dev"
    git(tmp, "clone", "-q", str(bare), str(dev))
    return project, bare, dev


def first_stage_started(store: object, commit: str) -> tuple[float, int] | None:
    """(started_at of the run's first stage, run id) once the store has them."""
    runs = [r for r in store.list_runs(limit=5, commit=commit)]  # type: ignore[attr-defined]
    if runs and runs[0].stages[0].started_at is not None:
        return runs[0].stages[0].started_at, runs[0].id
    return None


def pushes(project: Path, dev: Path, url: str) -> list[float]:
    """Push PUSHES commits one after another; the latency of each, in seconds."""
    from slipway.store.repository import Store

    store = Store(f"sqlite:///{project}/.slipway/state.db")
    latencies = []
    pauses = random.Random(14)  # the same pauses for both ways
    try:
        for i in range(1, PUSHES + 1):
            time.sleep(pauses.uniform(0, POLL_INTERVAL))
            (dev / "app/version.txt").write_text(f"{i}\n")
            git(dev, "commit", "-qam", f"change {i}")
            commit = git(dev, "rev-parse", "HEAD")
            pushed = time.time()
            git(dev, "push", "-q", "origin", "HEAD:main")
            deadline = time.monotonic() + PATIENCE
            while (found := first_stage_started(store, commit)) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"push {i}: no run started for {commit[:12]} ({url})")
                time.sleep(0.01)
            latencies.append(found[0] - pushed)
            while store.get_run(found[1]).state.value not in ("succeeded", "failed"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"push {i}: run {found[1]} did not end")
                time.sleep(0.05)
    finally:
        store.close()
    return latencies


def measure(*, poll: bool) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="slipway-bench-triggers-") as tmp:
        project, bare, dev = setup(Path(tmp), poll=poll)
        env = {**os.environ, **GIT_ENV, "SLIPWAY_WEBHOOK_SECRET": SECRET}
        env.pop("SLIPWAY_DATABASE_URL", None)
        proc, url = serve(project, env)
        try:
            if not poll:
                shutil.copy(ROOT / "examples/git-hooks/post-receive", bare / "hooks/post-receive")
                git(bare, "config", "slipway.url", f"{url}/api/hooks/bench/github")
                (Path(tmp) / "secret").write_text(SECRET)
                git(bare, "config", "slipway.secretfile", str(Path(tmp) / "secret"))
            else:  # the first poll runs the head the project was at; let it pass before measuring
                time.sleep(POLL_INTERVAL * 2)
            return pushes(project, dev, url)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def run() -> str:
    webhook = measure(poll=False)
    polling = measure(poll=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    rows = []
    for name, values in ((f"poll every {POLL_INTERVAL:g} s (baseline)", polling), ("webhook (post-receive hook)", webhook)):
        rows.append([
            name, f"{quantile(values, 50):.3f}", f"{quantile(values, 95):.3f}", f"{min(values):.3f}-{max(values):.3f}",
            f"{quantile(values, 50) / quantile(polling, 50):.2f}x",
            "" if values is polling else ("yes" if quantile(values, 95) < TARGET_P95 else "**no**"),
        ])  # fmt: skip
    return "\n".join([
        "## Push to first stage started (webhook and polling)",
        "",
        f"{PUSHES} pushes in a row per way, each `git push` to a bare repository on disk, measured from just before "
        "the push to the `started_at` the store records for the run's first stage. The webhook is the bare "
        "repository's post-receive hook posting a GitHub-signed delivery to a real `slipway serve`; the baseline "
        f"is the same server finding the pushes with its poller every {POLL_INTERVAL:g} s. Each run ends before the "
        f"next push, which comes after a random pause of up to {POLL_INTERVAL:g} s (the same seeded pauses both "
        f"ways). Target: under {TARGET_P95:g} s at p95 with webhooks. Load average during the run: {' '.join(load)}.",
        "",
        table(["trigger", "p50 (s)", "p95 (s)", "min-max (s)", "p50 vs polling", f"p95 < {TARGET_P95:g} s"], rows),
    ])
