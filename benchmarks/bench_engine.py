"""Engine overhead: a pipeline stage of 100 no-op steps, against running the same 100 commands directly.

The stage runs through the whole engine (state machine, store writes per step, output capture, masking,
the local target). The baseline runs ``sh -c true`` 100 times with subprocess in the same process. The
difference divided by 100 is the per-step overhead. Measured on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import git_project, median_time, table
from slipway.services import pipeline
from slipway.services.app import open_app

STEPS = 100
REPEAT = 5

CONFIG = """\
name: bench
artifact: {paths: [app]}
environments:
  none:
    targets: [{kind: local, name: n, path: t}]
pipeline:
  - {name: build, kind: build}
  - name: noop
    kind: test
    run:
""" + "".join("      - \"true\"\n" for _ in range(STEPS))


def baseline() -> None:
    """The same commands without Slipway."""
    for _ in range(STEPS):
        subprocess.run(["sh", "-c", "true"], check=True)


def engine_stage_seconds(root: Path, database_url: str) -> float:
    """Run the pipeline once; return how long its 100-step stage took according to the store."""
    app = open_app(config_path=root / "slipway.yml", database_url=database_url, environ={**os.environ, "SLIPWAY_USER": "bench"})
    try:
        outcome = asyncio.run(pipeline.start_run(app))
        run = app.store.get_run(outcome.run_id)
        stage = next(s for s in run.stages if s.name == "noop")
        assert stage.started_at is not None and stage.finished_at is not None
        assert len(app.store.steps(run.id, stage="noop")) == STEPS
        return stage.finished_at - stage.started_at
    finally:
        app.close()


def measure(database_url: str, root: Path) -> tuple[float, float]:
    """(median stage seconds, median baseline seconds)."""
    samples = sorted(engine_stage_seconds(root, database_url) for _ in range(REPEAT))
    base, _ = median_time(baseline, REPEAT)
    return samples[len(samples) // 2], base


def run() -> str:
    """Measure and return the markdown section."""
    from tests.support.postgres import PostgresServer

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "proj"
        git_project(root, {"slipway.yml": CONFIG, "app/x.txt": "x\n"})
        results = {"SQLite": measure(f"sqlite:///{root / '.slipway/state.db'}", root)}
        with PostgresServer() as pg:
            results["PostgreSQL"] = measure(pg.create_database("bench"), root)
    for name, (stage, base) in results.items():
        overhead_ms = (stage - base) / STEPS * 1000
        rows.append([name, f"{stage:.3f} s", f"{base:.3f} s", f"{stage / base:.2f}x", f"{overhead_ms:.2f} ms",
                     "yes" if overhead_ms < 10 else "**no**"])
    return (
        "## Engine overhead: 100 no-op steps\n\n"
        f"One test stage of {STEPS} `true` commands run through the engine (store writes, output capture,\n"
        "masking, the local target), against the same commands run directly with subprocess in the same\n"
        f"process. Median of {REPEAT} runs each. Target: under 10 ms overhead per step.\n\n"
        + table(["store", "engine (stage)", "baseline (direct)", "ratio", "overhead per step", "under 10 ms"], rows)
        + "\n\nReproduce: `make bench` (or `python benchmarks/run.py engine`).\n"
    )
