"""Run the benchmarks and write BENCHMARKS.md. Usage: python benchmarks/run.py [NAME ...]"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for 'benchmarks.*' only; slipway itself comes from the installed wheel

from benchmarks.common import machine  # noqa: E402

#: name -> module; each module has run() -> markdown section.
BENCHMARKS = {
    "engine": "benchmarks.bench_engine",
    "backfill": "benchmarks.bench_backfill",
    "fleet": "benchmarks.bench_fleet",
    "shell": "benchmarks.bench_shell",
    "zero_downtime": "benchmarks.bench_zero_downtime",
    "startup": "benchmarks.bench_startup",
    "server": "benchmarks.bench_server",
    "triggers": "benchmarks.bench_triggers",
    "build_cache": "benchmarks.bench_build_cache",
}
OUT = ROOT / "BENCHMARKS.md"
MARK = "<!-- section: {} -->"


def main(names: list[str]) -> None:
    """Run the named benchmarks (all by default) and update their sections of BENCHMARKS.md."""
    chosen = names or list(BENCHMARKS)
    sections = _read_sections()
    for name in chosen:
        print(f"running benchmark {name} ...", flush=True)
        started = time.time()
        body = importlib.import_module(BENCHMARKS[name]).run()
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
        sections[name] = f"{MARK.format(name)}\n{body}\nMeasured {stamp} on {machine()}.\n"
        print(body)
    text = "# Benchmarks\n\nFigures are ratios against a baseline measured in the same run. `make bench` reruns them all.\n\n"
    text += "\n".join(sections[n].rstrip() + "\n" for n in BENCHMARKS if n in sections)  # no blank lines pile up
    OUT.write_text(text)
    print(f"wrote {OUT}")


def _read_sections() -> dict[str, str]:
    if not OUT.exists():
        return {}
    sections: dict[str, str] = {}
    current = None
    for line in OUT.read_text().splitlines(keepends=True):
        if line.startswith("<!-- section: "):
            current = line.removeprefix("<!-- section: ").split(" ", 1)[0]
            sections[current] = ""
        if current:
            sections[current] += line
    return sections


if __name__ == "__main__":
    main(sys.argv[1:])
