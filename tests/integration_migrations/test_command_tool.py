"""``migrations: {tool: command}`` through the CLI on SQLite: a tool of the project's own (a small script)
driven by the commands slipway.yml gives. Release 1 creates a table (expand), release 2 drops a column
(contract): it runs after verify, once the host runs a release whose ``list`` prints it, is recorded with
its release, and a rollback to release 1 is then refused before the host changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.e2e.conftest import GIT_ENV, Project

pytestmark = pytest.mark.timeout(120)

CONFIG = """\
version: 1
name: tool-app
artifact: {{paths: [tool.py, migrations]}}
migrations:
  tool: command
  commands:
    list: {python} tool.py list
    head: {python} tool.py head
    apply: {python} tool.py apply
    sql: {python} tool.py sql
environments:
  production:
    database: {{url: "sqlite:///data/app.db"}}
    targets:
      - {{kind: local, name: production-1, path: .slipway/targets/production-1}}
pipeline:
  - {{name: build, kind: build}}
  - {{name: deploy-production, kind: deploy, environment: production}}
"""

TOOL = '''\
"""migrations/NNNN_PHASE_NAME.sql applied in order to the SQLite database Slipway names."""
import os, pathlib, sqlite3, sys

db = sqlite3.connect(os.environ["SLIPWAY_APP_DATABASE_URL"].removeprefix("sqlite:///"))
db.execute("CREATE TABLE IF NOT EXISTS tool_version (id TEXT)")
head = db.execute("SELECT max(id) FROM tool_version").fetchone()[0] or ""
files = sorted(pathlib.Path("migrations").glob("*.sql"))
command = sys.argv[1]
if command == "list":
    for f in files:
        print(*f.stem.split("_", 2))
elif command == "head":
    print(head)
elif command == "sql":
    print(next(f for f in files if f.name.startswith(os.environ["SLIPWAY_MIGRATION"])).read_text())
else:
    for f in files:
        if head < f.name[:4] <= os.environ["SLIPWAY_MIGRATION"]:
            db.executescript(f.read_text())
            db.execute("INSERT INTO tool_version VALUES (?)", (f.name[:4],))
    db.commit()
'''


def test_a_command_tool_runs_expand_then_contract_and_guards_the_rollback(tmp_path: Path) -> None:
    root = tmp_path / "tool-app"
    (root / "migrations").mkdir(parents=True)
    (root / "slipway.yml").write_text(CONFIG.format(python=sys.executable))
    (root / "tool.py").write_text(TOOL)
    (root / "migrations/0001_expand_items.sql").write_text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);\n")
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
    env.pop("SLIPWAY_DATABASE_URL", None)
    app = Project(root=root, env=env)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    app.commit("release 1")
    assert app.json("run")["state"] == "succeeded"
    current = root / ".slipway/targets/production-1/current"
    first = os.readlink(current)

    (root / "migrations/0002_contract_drop_name.sql").write_text("ALTER TABLE items DROP COLUMN name;\n")
    app.commit("release 2")
    run = app.slipway("run")
    assert "migrate: contract 0002" in run.stdout + run.stderr, run.stdout + run.stderr
    second = os.readlink(current)
    rows = {r["version"]: r for r in app.json("migrations", "status", "production")}
    assert {v: (r["phase"], r["state"], r["release"]) for v, r in rows.items()} == {
        "0001": ("expand", "applied", Path(first).name),
        "0002": ("contract", "applied", Path(second).name),
    }

    refused = app.slipway("rollback", "production", "--reason", "back", check=False)
    assert refused.returncode == 7, refused.stdout + refused.stderr
    assert "contract migration 0002 (drop_name) was applied there" in refused.stderr, refused.stderr
    assert "migrations.commands.list" in refused.stderr and f"with release {Path(second).name}" in refused.stderr
    assert os.readlink(current) == second
