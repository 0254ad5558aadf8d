"""CLI start-up: ``slipway --help``, ``slipway version`` and ``slipway status`` against ``python -c pass``.

Each command runs as a new process with the same interpreter, REPEAT times, in turn with the baseline so that
a change in the machine's load hits both. ``status`` runs on a copy of examples/webapp whose SQLite store
holds a few runs (created through the service layer, not driven: nothing is deployed). A second pass runs
each command with cold bytecode: no ``__pycache__`` is read or written (``PYTHONPYCACHEPREFIX`` points at an
empty directory and ``PYTHONDONTWRITEBYTECODE`` is set), as on the first start after an install.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import GIT_ENV, git_project, table

REPEAT = 15
COLD_REPEAT = 3
RUNS = 5
ROOT = Path(__file__).resolve().parents[1]
SLIPWAY = str(Path(sys.executable).with_name("slipway"))
#: command -> (argv, target wall seconds on an idle machine)
COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "python -c pass (baseline)": ([sys.executable, "-c", "pass"], None),
    "slipway --help": ([SLIPWAY, "--help"], 0.25),
    "slipway version": ([SLIPWAY, "version"], 0.25),
    "slipway status": ([SLIPWAY, "status"], 0.5),
}


def example_project(root: Path) -> dict[str, str]:
    """A committed copy of examples/webapp whose store holds ``RUNS`` pending runs; the environment to use."""
    shutil.copytree(ROOT / "examples/webapp", root, ignore=shutil.ignore_patterns(".slipway"))
    git_project(root, {})
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "bench"}
    for name in ("SLIPWAY_DATABASE_URL", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)  # the warm pass reads (and first writes) the installed packages' bytecode
    from slipway.services.app import open_app
    from slipway.services.pipeline import create_run

    app = open_app(cwd=root, environ=env)
    try:
        for _ in range(RUNS):
            create_run(app)
    finally:
        app.close()
    return env


def sample(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv``; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(repeat: int, *, cwd: Path, env: dict[str, str]) -> dict[str, tuple[list[float], list[float]]]:
    """Every command ``repeat`` times, interleaved: name -> (wall samples, CPU samples)."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in COMMANDS}
    for argv, _ in COMMANDS.values():
        sample(argv, cwd=cwd, env=env)  # warm the page cache and write the bytecode (unless cold)
    for _ in range(repeat):
        for name, (argv, _) in COMMANDS.items():
            wall, cpu = sample(argv, cwd=cwd, env=env)
            samples[name][0].append(wall)
            samples[name][1].append(cpu)
    return samples


def rows(samples: dict[str, tuple[list[float], list[float]]], *, with_target: bool) -> list[list[str]]:
    """One markdown row per command: median wall, spread, ratio to the baseline, median CPU, target."""
    base = statistics.median(samples["python -c pass (baseline)"][0])
    out = []
    for name, (walls, cpus) in samples.items():
        wall = statistics.median(walls)
        row = [f"`{name}`", f"{wall:.3f} s", f"{min(walls):.3f}-{max(walls):.3f} s", f"{wall / base:.1f}x",
               f"{statistics.median(cpus):.3f} s"]
        if with_target:
            target = COMMANDS[name][1]
            row.append("-" if target is None else f"{target} s: {'yes' if wall < target else '**no**'}")
        out.append(row)
    return out


def run() -> str:
    """Measure and return the markdown section."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "webapp"
        env = example_project(root)
        load = os.getloadavg()
        warm = measure(REPEAT, cwd=root, env=env)
        cold_env = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(Path(tmp) / "no-pycache")}
        cold = measure(COLD_REPEAT, cwd=root, env=cold_env)
        load_after = os.getloadavg()
    head = ["command", "median wall", "spread (min-max)", "ratio to baseline", "median CPU"]
    return (
        "## CLI start-up\n\n"
        f"Each command as a new process, {REPEAT} times, interleaved with the baseline `python -c pass` (the same\n"
        f"interpreter). `slipway status` runs on a copy of examples/webapp whose SQLite store holds {RUNS} runs.\n"
        "Targets (on an idle machine): under 0.25 s wall for `--help` and `version`, under 0.5 s for `status`.\n"
        "On a busy machine the wall time is mostly waiting for a core; the median CPU (user + system of the\n"
        "process) is what the command itself costs.\n"
        f"Load average (1, 5, 15 min) before: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; "
        f"after: {load_after[0]:.2f}, {load_after[1]:.2f}, {load_after[2]:.2f}.\n\n"
        + table([*head, "target"], rows(warm, with_target=True))
        + f"\n\nWith cold bytecode (no `__pycache__` read or written, as on the first start after an install), "
        f"{COLD_REPEAT} times each:\n\n"
        + table(head, rows(cold, with_target=False))
        + "\n\nHow it stays fast: `slipway.cli.main` imports Typer and nothing heavy; each command imports the\n"
        "services (SQLAlchemy, pydantic, the models) and Rich when it runs, and `version` is answered before Typer\n"
        "parses. tests/core/test_cli_startup.py pins which modules `--help` and `version` load. Reproduce:\n"
        "`python benchmarks/run.py startup`.\n"
    )
