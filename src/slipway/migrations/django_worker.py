"""Run Django's own management commands on a release's project, in a process of its own.

Started by :mod:`slipway.migrations.django_tool` as ``python django_worker.py`` with the directory of the
release's manage.py as its working directory (the release's code, never Slipway's, and never two releases'
modules in one process), and a JSON request on stdin::

    {"operation": "scripts" | "migrate" | "sql", "manage": "manage.py", "root": "/tmp/.../release",
     "target": "items.0002_item_title", "ids": ["items.0002_item_title"], "result": "/tmp/.../out.json"}

Each command runs through the project's manage.py (so its DJANGO_SETTINGS_MODULE default and sys.path
set-up apply), in this process, with its output captured. ``scripts`` is ``showmigrations --plan -v 2``
plus what the plan does not print: each migration's file, its ``phase`` and ``allow`` class attributes,
and every migration Django's recorder says is applied (also those the release does not have). The
answer goes to ``result`` (stdout belongs to the application); it imports only the standard library and
Django, so it runs under the application's own interpreter (``migrations.python``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import sys
import traceback
from typing import Any

#: The class attributes of a Migration that name its phase and waive lint rules.
PHASE_ATTRIBUTE = "phase"
ALLOW_ATTRIBUTE = "allow"


def manage(request: dict[str, Any], argv: list[str]) -> str:
    """Run ``manage.py ARGV`` here; what it printed; RuntimeError with its stderr when it fails."""
    path = os.path.abspath(os.path.basename(request["manage"]))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{request['manage']} is not in the release (migrations.manage)")
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [path, *argv, "--no-color"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            tail = err.getvalue().strip()[-2000:]
            raise RuntimeError(f"manage.py {' '.join(argv)} exited {exc.code}: {tail}") from None
    return out.getvalue()


def scripts(request: dict[str, Any]) -> dict[str, Any]:
    """The plan of every migration, and each one's file, phase marker and waived rules; what is applied."""
    plan = manage(request, ["showmigrations", "--plan", "--verbosity", "2"])
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = {}
    for (app, name), migration in loader.disk_migrations.items():
        module = sys.modules[type(migration).__module__]
        doc = (module.__doc__ or "").strip() or "; ".join(op.describe() for op in migration.operations)
        found[f"{app}.{name}"] = {
            "path": os.path.relpath(str(module.__file__), request["root"]),
            "doc": doc,
            "phase": getattr(migration, PHASE_ATTRIBUTE, None),
            "allow": getattr(migration, ALLOW_ATTRIBUTE, None),
        }
    applied = MigrationRecorder(connections[DEFAULT_DB_ALIAS]).applied_migrations()
    return {"plan": plan, "migrations": found, "applied": [f"{app}.{name}" for app, name in applied]}


def parse_migrate_plan(text: str) -> list[str]:
    """The migrations ``migrate --plan`` would run (``app.name``), in order, its operations left out;
    ValueError when it printed no plan."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Planned operations:"), None)
    if start is None:
        raise ValueError(f"'manage.py migrate --plan' printed no plan: {text.strip()[:300]!r}")
    # Migration labels start the line; their operations (and "No planned migration operations.") are indented.
    return [line.strip() for line in lines[start + 1 :] if line.strip() and not line[0].isspace()]


def migrate(request: dict[str, Any]) -> dict[str, Any]:
    """``migrate APP NAME``, once ``migrate APP NAME --plan`` said it runs that migration and nothing else."""
    target = request["target"]
    app, name = target.split(".", 1)
    planned = parse_migrate_plan(manage(request, ["migrate", app, name, "--plan"]))
    if planned != [target]:
        return {"planned": planned}
    return {"planned": planned, "output": manage(request, ["migrate", app, name, "--noinput"])}


def sql(request: dict[str, Any]) -> dict[str, Any]:
    """``sqlmigrate APP NAME`` of each id."""
    return {"sql": {i: manage(request, ["sqlmigrate", *i.split(".", 1)]) for i in request["ids"]}}


OPERATIONS = {
    "scripts": scripts,
    "migrate": migrate,
    "sql": sql,
}


def main() -> int:
    """Read the request from stdin, run it, write the answer to its ``result`` file."""
    request = json.loads(sys.stdin.read())
    # Run as a script, this file's directory is first on sys.path: its neighbours would shadow the
    # standard library. The project's packages (manage.py's directory) go there, as manage.py would have.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [os.getcwd()] + [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        answer = OPERATIONS[request["operation"]](request)
        code = 0
    except BaseException as exc:  # the application's code may raise anything, SystemExit included
        answer = {
            "error": f"{type(exc).__name__}: {exc}".strip(),
            "traceback": "".join(traceback.format_exception(exc)[-6:]),
        }
        code = 1
    with open(request["result"], "w", encoding="utf-8") as out:
        json.dump(answer, out)
    return code


if __name__ == "__main__":
    sys.exit(main())
