"""The slipway.yml ``slipway init`` writes for a detected project (:mod:`slipway.model.project_kind`). Pure text.

What it writes must pass ``slipway validate`` and take a first ``slipway run`` to the approval gate with the
embedded defaults (SQLite state, local targets): so every path it names exists after the build, every
command it writes is one the project needs, and a service starts only where init knows how to start it.
Python ships a wheelhouse built once per commit; each host makes its own virtual environment from it
without network (a venv made in the build links to the build machine's interpreter and cannot ship).
"""

from __future__ import annotations

import json
import shlex

from slipway import DOCS_URL, __version__
from slipway.model.project_kind import NPM_PLACEHOLDER_TEST, Detection, Kind, PythonProject

#: The ports the two environments' services listen on (both on this machine with local targets).
DEV_PORT, PRODUCTION_PORT = 8000, 8001
PIP = "--quiet --disable-pip-version-check"
#: The statuses the generated check accepts: any answer of the app (a fresh app may have no page at /).
ANSWERS = [200, 301, 302, 404]


def _q(value: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is YAML's)."""
    return json.dumps(value)


def _describe(detection: Detection) -> str:
    return {
        Kind.FLASK: "a Flask app", Kind.DJANGO: "a Django project", Kind.FASTAPI: "a FastAPI app",
        Kind.PYTHON: "a Python project", Kind.NODE: "a Node app", Kind.UNKNOWN: "no known project kind",
    }[detection.kind]


def summary(detection: Detection) -> str:
    """One line: what was detected and from what."""
    return f"{_describe(detection)} ({'; '.join(detection.findings)})"


def _python_install(python: PythonProject) -> str:
    """Make the release's virtual environment from the wheelhouse, offline."""
    what = f"-r {python.source}" if python.source == "requirements.txt" else (python.dist_name or ".")
    return f"python3 -m venv .venv && .venv/bin/pip install {PIP} --no-index --find-links wheels {what}"


def _python_build(python: PythonProject) -> str:
    if python.source == "requirements.txt":  # cached on the lock file: a restored wheelhouse skips pip
        return f"test -d wheels || python3 -m pip wheel {PIP} --wheel-dir wheels -r requirements.txt"
    return f"mkdir -p wheels && python3 -m pip wheel {PIP} --wheel-dir wheels ."


def _server_command(detection: Detection) -> str | None:
    """How the web service starts, from the release directory; None when init does not know."""
    python, entry, bind = detection.python, detection.entry or "app:app", "{{ host.address }}:$PORT"
    if detection.kind is Kind.NODE:
        node = detection.node
        return f"node {node.entry}" if node and node.entry else "npm start"
    if python is None or detection.kind is Kind.PYTHON:
        return None
    if detection.kind is Kind.FASTAPI:
        return f".venv/bin/uvicorn {entry} --host {{{{ host.address }}}} --port $PORT"
    wsgi = f"{entry}.wsgi" if detection.kind is Kind.DJANGO else entry
    if python.has("gunicorn"):
        return f".venv/bin/gunicorn --bind {bind} {shlex.quote(wsgi)}"
    if detection.kind is Kind.DJANGO:
        return f".venv/bin/python manage.py runserver --noreload {bind}"
    module = entry.split(":")[0]
    return f".venv/bin/flask --app {module} run --host {{{{ host.address }}}} --port $PORT"


def server_advice(detection: Detection) -> tuple[str, ...]:
    """What to change for production that init cannot (a development server)."""
    python = detection.python
    if detection.kind in (Kind.FLASK, Kind.DJANGO) and python and not python.has("gunicorn"):
        return ("no gunicorn among the dependencies: the service runs the framework's development server; "
                "add gunicorn and run 'slipway init --force' again (or edit deploy.services.web.command)",)
    if detection.kind is Kind.FASTAPI and python and not python.has("uvicorn"):
        return ("no uvicorn among the dependencies: add it (the service runs .venv/bin/uvicorn)",)
    return ()


def _test_commands(detection: Detection) -> list[str]:
    """The test stage's commands, run on the artifact (the wheelhouse or node_modules the build made)."""
    if detection.kind is Kind.NODE and detection.node:
        node = detection.node
        if NPM_PLACEHOLDER_TEST not in node.scripts.get("test", NPM_PLACEHOLDER_TEST):
            return ["npm test"]
        return [f"node --check {node.entry}"] if node.entry else []
    python = detection.python
    if python is None:
        return []
    commands = [_python_install(python)]
    if python.has("pytest"):
        return [*commands, ".venv/bin/python -m pytest -q"]
    if detection.kind is Kind.DJANGO:
        return [*commands, ".venv/bin/python manage.py test"]
    if detection.kind in (Kind.FLASK, Kind.FASTAPI) and detection.entry:
        return [*commands, f".venv/bin/python -c {shlex.quote('import ' + detection.entry.split(':')[0])}"]
    return [*commands, ".venv/bin/python -m compileall -q -x '[.]venv' ."]


def _header(detection: Detection) -> list[str]:
    return [
        f"# slipway.yml of {detection.name}, written by 'slipway init' (Slipway {__version__}).",
        f"# Detected: {summary(detection)}.",
        f"# Reference: {DOCS_URL}/config.md",
        f"# Services on hosts: {DOCS_URL}/services-on-hosts.md",
        "# The pipeline runs as committed: git add slipway.yml .gitignore && git commit, then 'slipway run'.",
        "# One artifact is built per commit, and that same artifact is tested and deployed everywhere.",
        "version: 1",
        f"name: {detection.name}",
        "",
    ]


def _artifact(detection: Detection) -> list[str]:
    lines = ["artifact:",
             "  # Commands run once per commit, in a clean export of the commit (never your working tree)."]
    build: list[str] = []
    cache: list[str] = []
    if detection.python is not None:
        lines += ["  # Python: a wheelhouse of the dependencies, built here once; each host makes its own virtual",
                  "  # environment from it without network (deploy.hooks.install). Hosts need python3 with venv, of",
                  "  # the same minor version as here when a dependency has compiled code."]
        build.append(_python_build(detection.python))
        if detection.python.source == "requirements.txt":
            cache.append("    - {key: [requirements.txt], paths: [wheels]}")
    if detection.node is not None:
        node = detection.node
        install = {"yarn.lock": "yarn install --frozen-lockfile",
                   "pnpm-lock.yaml": "pnpm install --frozen-lockfile"}.get(node.lock_file or "", "npm ci")
        lines.append("  # Node: the dependencies of the lock file, installed once here and shipped in node_modules.")
        if node.lock_file:
            build.append(f"test -d node_modules || {install}")
            cache.append(f"    - {{key: [{node.lock_file}], paths: [node_modules]}}")
        else:
            build.append("npm install")
        build += ["npm run build"] if "build" in node.scripts else []
    lines += ["  build:" + ("" if build else " []")] + [f"    - {_q(c)}" for c in build]
    if cache:
        lines += ["  # The dependency layer is kept while the lock file is unchanged (docs: config.md, Dependency layers).",
                  "  cache:", *cache]
    lines += ["  # What goes into the artifact: the whole export, with what the build made.",
              '  paths: ["."]',
              '  exclude: ["**/__pycache__", "**/*.pyc", ".git", ".venv"]', ""]
    return lines


def _deploy(detection: Detection) -> list[str]:
    lines = ["deploy:", "  keep_releases: 5          # releases kept on each host (rollback needs 2)"]
    hooks: list[str] = []
    if detection.python is not None:
        hooks += ["    install:                # on each host, in the new release's directory",
                  f"      - {_q(_python_install(detection.python))}"]
    if detection.kind is Kind.DJANGO:
        hooks += ["    migrate:                # once per deployment, before any host switches",
                  '      - {run: ".venv/bin/python manage.py migrate --noinput", once: true}']
    lines += (["  hooks:", *hooks] if hooks else [])
    command = _server_command(detection)
    if command is None:
        return [*lines, *_service_example(), ""]
    lines += [
        "  # The app's process on each host, under a supervisord Slipway runs in the deploy root: restarted",
        "  # on every release, waited for until its port answers, restarted if it dies.",
        "  services:",
        "    web:",
        f"      command: {_q(command)}",
        '      port: "{{ vars.port }}"  # given to the process as $PORT',
        "  checks:                   # on each host once it runs the new release; a failure reverts it",
        "    - kind: http",
        "      name: web answers",
        '      url: "http://{{ host.address }}:{{ vars.port }}/"',
        f"      expect_status: {json.dumps(ANSWERS)}   # point it at a health page and expect 200",
        "      retries: 5",
        "",
    ]
    return lines


def _service_example() -> list[str]:
    return ["  # No process to start was detected. Add your app's, e.g.:",
            "  # services:",
            "  #   web:",
            '  #     command: "./bin/server --host {{ host.address }} --port $PORT"',
            '  #     port: "{{ vars.port }}"']


def _environments() -> list[str]:
    lines = ["environments:"]
    for env, port in (("dev", DEV_PORT), ("production", PRODUCTION_PORT)):
        lines += [f"  {env}:",
                  '    url: "http://127.0.0.1:{{ vars.port }}"',
                  f"    vars: {{port: {port}}}",
                  "    targets:",
                  f"      - {{kind: local, name: {env}-1, path: .slipway/targets/{env}}}"]
    lines += ["      # a server: {kind: ssh, name: web-1, address: 10.0.0.5, user: deploy, path: /srv/APP}", ""]
    return lines


def _pipeline(detection: Detection) -> list[str]:
    lines = ["pipeline:", "  - {name: build, kind: build}"]
    tests = _test_commands(detection)
    if tests:
        lines += ["  - name: test                # runs on the artifact, in a clean export of the commit",
                  "    kind: test", "    run:"] + [f"      - {_q(c)}" for c in tests]
    lines += ["  - {name: deploy-dev, kind: deploy, environment: dev}",
              "  - {name: approve-production, kind: approval}   # slipway approve RUN --reason TEXT",
              "  - {name: deploy-production, kind: deploy, environment: production}", ""]
    return lines


def render_config(detection: Detection) -> str:
    """The slipway.yml text for ``detection``: commented, valid, and runnable to the approval gate."""
    return "\n".join([*_header(detection), *_artifact(detection), *_deploy(detection), *_environments(),
                      *_pipeline(detection)])
