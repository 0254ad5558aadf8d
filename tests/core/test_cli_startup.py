"""Fast start-up, by mechanism rather than by the clock: ``slipway --help`` and ``slipway version`` load no
state store, no service, no model and no SQLAlchemy; ``status`` loads them. BENCHMARKS.md has the times."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

#: Runs the CLI's entry point in a fresh interpreter and prints every module loaded by the end.
PROBE = """
import atexit, sys
atexit.register(lambda: print("\\n".join(sorted(sys.modules)), file=sys.stderr))
from slipway.cli.main import main
main(sys.argv[1:])
"""
#: What none of the fast commands may import; a prefix stands for the package and all its modules.
HEAVY = ("sqlalchemy", "alembic", "slipway.store", "slipway.services", "slipway.model", "slipway.config",
         "slipway.engine", "pydantic", "asyncssh", "docker", "httpx")


def loaded_by(*args: str, cwd: str | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=90, check=False, cwd=cwd
    )
    modules = {line for line in proc.stderr.splitlines() if line and " " not in line}
    return proc, modules


def heavy(modules: set[str], *, allowed: tuple[str, ...] = ()) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY if h not in allowed)}


def test_help_lists_every_command_and_loads_nothing_heavy() -> None:
    proc, modules = loaded_by("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("version", "init", "validate", "run", "approve", "reject", "promote", "rollback", "status",
                    "history", "deployments", "logs", "unlock", "resume", "migrations", "breakers"):
        assert f" {command} " in proc.stdout, f"--help does not list {command}"
    assert "Switch ENV back to an earlier release" in proc.stdout
    assert heavy(modules) == set()


def test_version_loads_nothing_heavy_nor_rich() -> None:
    proc, modules = loaded_by("version")
    assert proc.returncode == 0 and proc.stdout.strip() == __import__("slipway").__version__, proc.stderr
    assert heavy(modules) == set() and not {m for m in modules if m.split(".")[0] == "rich"}


def test_a_subcommand_help_loads_none_of_slipways_heavy_modules() -> None:
    # Typer coerces the global options (pydantic) before a subcommand's --help: its cost, not ours.
    for args in (("run", "--help"), ("migrations", "--help"), ("breakers", "--help")):
        proc, modules = loaded_by(*args)
        assert proc.returncode == 0, proc.stderr
        assert heavy(modules, allowed=("pydantic",)) == set(), args


def test_the_probe_sees_what_a_real_command_loads(tmp_path: object) -> None:
    # The probe would pass with every command lazy and broken: 'status' must load the store and the services.
    proc, modules = loaded_by("status", "--json", cwd=str(tmp_path))
    assert proc.returncode == 2 and "slipway.yml" in proc.stderr  # no project here: the config is looked for
    assert {"slipway.config", "slipway.services.app", "slipway.store.repository", "sqlalchemy"} <= modules
