"""Run one Alembic operation on a release's files, in a process of its own (``python alembic_worker.py``).

Slipway never imports a release's ``env.py`` or revision modules into its own process: they are the
application's code (they import its models, read its settings), they must see the release's directory as
their working directory and first on ``sys.path``, and two releases' modules of the same name must not
meet in one ``sys.modules``. So :mod:`slipway.migrations.alembic` starts this file as a script, with the
release's extracted files as the working directory, and hands it a JSON request on stdin::

    {"operation": "scripts" | "upgrade" | "sql", "config": "alembic.ini", "script_location": null,
     "url": "postgresql+psycopg://...", "target": "ae10", "start": null, "result": "/tmp/.../out.json"}

It writes its JSON answer to ``result`` (never to stdout, which belongs to the application's env.py) and
exits 0, or writes ``{"error": ...}`` and exits 1. It imports only the standard library and Alembic, so it
also runs under the application's own interpreter (``migrations.python``).
"""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
from typing import Any

#: The module attribute of a revision that names its phase, and the one that waives lint rules.
PHASE_ATTRIBUTE = "phase"
ALLOW_ATTRIBUTE = "allow"


def _config(request: dict[str, Any]) -> Any:
    """An Alembic Config for the release in the working directory, with Slipway's database URL."""
    from alembic.config import Config

    ini = request.get("config")
    cfg = Config(ini) if ini and os.path.isfile(ini) else Config()
    if ini and not os.path.isfile(ini) and not request.get("script_location"):
        raise FileNotFoundError(f"{ini} is not in the release (migrations.config)")
    if request.get("script_location"):
        cfg.set_main_option("script_location", request["script_location"])
    if request.get("url"):
        # ConfigParser interpolates '%': a percent-encoded password must survive it.
        cfg.set_main_option("sqlalchemy.url", request["url"].replace("%", "%%"))
    cfg.attributes["slipway"] = True
    return cfg


def scripts(request: dict[str, Any]) -> dict[str, Any]:
    """Every revision of the script directory, base first, with its phase marker and waived rules."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config(request))
    revisions = []
    for sc in reversed(list(script.walk_revisions())):
        module = sc.module
        down = sc.down_revision
        revisions.append(
            {
                "revision": sc.revision,
                "down_revision": list(down) if isinstance(down, tuple | list) else down,
                "path": os.path.relpath(sc.path),
                "doc": (sc.doc or "").strip(),
                "phase": getattr(module, PHASE_ATTRIBUTE, None),
                "allow": getattr(module, ALLOW_ATTRIBUTE, None),
            }
        )
    return {"heads": list(script.get_heads()), "revisions": revisions}


def upgrade(request: dict[str, Any]) -> dict[str, Any]:
    """``alembic upgrade TARGET`` online, against the database of ``url``."""
    from alembic import command

    command.upgrade(_config(request), request["target"])
    return {}


def sql(request: dict[str, Any]) -> dict[str, Any]:
    """The SQL ``alembic upgrade [START:]TARGET --sql`` prints (offline mode: no database is touched)."""
    from alembic import command

    buffer = io.StringIO()
    cfg = _config(request)
    cfg.output_buffer = buffer
    start, target = request.get("start"), request["target"]
    command.upgrade(cfg, f"{start}:{target}" if start else target, sql=True)
    return {"sql": buffer.getvalue()}


OPERATIONS = {"scripts": scripts, "upgrade": upgrade, "sql": sql}


def main() -> int:
    """Read the request from stdin, run it, write the answer to its ``result`` file."""
    request = json.loads(sys.stdin.read())
    # Run as a script, this file's directory is first on sys.path: its neighbours (concurrent.py ...)
    # would shadow the standard library. The release's own packages (models env.py imports) go there.
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
