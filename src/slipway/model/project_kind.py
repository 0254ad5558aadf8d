"""What kind of project ``slipway init`` looks at: Python (Flask, Django, FastAPI, or none of them), Node, or
unknown, read from the project's own files. Pure: the caller reads :data:`FILES_READ` and passes their text.

The findings say what was seen, so that ``slipway init`` can tell the user what it based the config on.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: Files whose text detection reads when they exist (paths relative to the project).
PYTHON_ENTRY_FILES = ("app.py", "main.py", "wsgi.py", "asgi.py", "application.py", "server.py",
                      "app/__init__.py", "app/main.py", "src/main.py")
NODE_LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml")
NODE_ENTRY_FILES = ("server.js", "index.js", "app.js", "main.js", "server.mjs", "index.mjs")
FILES_READ = ("requirements.txt", "pyproject.toml", "manage.py", "package.json", *NODE_LOCK_FILES,
              *PYTHON_ENTRY_FILES, *NODE_ENTRY_FILES)
#: What ``npm init`` writes as the test script: not a test.
NPM_PLACEHOLDER_TEST = "no test specified"
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?")


class Kind(StrEnum):
    """The project kinds ``slipway init`` writes a config for."""

    FLASK = "flask"
    DJANGO = "django"
    FASTAPI = "fastapi"
    PYTHON = "python"
    NODE = "node"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PythonProject:
    """A Python project's dependencies: where they are declared, and their normalised names."""

    #: ``requirements.txt`` or ``pyproject.toml``.
    source: str
    deps: frozenset[str]
    #: The distribution name a pyproject.toml declares (installed by name from the wheelhouse).
    dist_name: str | None = None

    def has(self, *names: str) -> bool:
        """Whether any of ``names`` is a dependency."""
        return any(n in self.deps for n in names)


@dataclass(frozen=True)
class NodeProject:
    """A Node project: how to install its dependencies, its scripts, and the file that starts it."""

    lock_file: str | None
    scripts: Mapping[str, str]
    #: The file ``node`` runs (``server.js``), or None when only ``npm start`` knows.
    entry: str | None


@dataclass(frozen=True)
class Detection:
    """What ``slipway init`` found: the kind, what it was seen in, and what the config needs to know."""

    kind: Kind
    name: str
    findings: tuple[str, ...] = ()
    python: PythonProject | None = None
    node: NodeProject | None = None
    #: The app's WSGI/ASGI target (``app:app``, ``mysite.wsgi``) or Django's settings package.
    entry: str | None = None
    #: Advice for what init could not settle (a missing server, no entry file).
    advice: tuple[str, ...] = field(default=())


def project_name(raw: str) -> str:
    """A project name Slipway accepts (letters, digits, ``.``, ``_``, ``-``) from a directory or package name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw.lstrip("@")).strip("-._")
    return name or "app"


def requirement_name(line: str) -> tuple[str, str] | None:
    """(normalised name, extras) of one requirement (``Flask[async]>=3``), None for an option or a comment."""
    text = line.split("#", 1)[0].strip()
    if not text or text.startswith("-") or "://" in text:
        return None
    match = _REQUIREMENT_NAME.match(text)
    if not match:
        return None
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), (match.group(2) or "").lower()


def _names(lines: list[str]) -> frozenset[str]:
    names: set[str] = set()
    for line in lines:
        found = requirement_name(line)
        if found:
            names.add(found[0])
            if found[0] == "fastapi" and "standard" in found[1]:
                names.add("uvicorn")  # fastapi[standard] brings it
    return frozenset(names)


def _table(data: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """The TOML table at ``keys`` (empty when missing or not a table)."""
    for key in keys:
        value = data.get(key)
        data = value if isinstance(value, dict) else {}
    return dict(data)


def python_project(files: Mapping[str, str]) -> PythonProject | None:
    """The project's Python dependencies: requirements.txt first (what is installed), else pyproject.toml."""
    pyproject: dict[str, Any] = {}
    if "pyproject.toml" in files:
        try:
            pyproject = tomllib.loads(files["pyproject.toml"])
        except tomllib.TOMLDecodeError:
            pyproject = {}
    project, poetry = _table(pyproject, "project"), _table(pyproject, "tool", "poetry")
    dist = project.get("name") or poetry.get("name")
    dist_name = str(dist) if dist else None
    if "requirements.txt" in files:
        return PythonProject("requirements.txt", _names(files["requirements.txt"].splitlines()), dist_name)
    if "pyproject.toml" not in files:
        return None
    lines = [str(d) for d in project.get("dependencies") or []]
    for extra in _table(project, "optional-dependencies").values():
        lines += [str(d) for d in extra or []]
    lines += [str(k) for k in _table(poetry, "dependencies") if str(k).lower() != "python"]
    return PythonProject("pyproject.toml", _names(lines), dist_name)


def _python_files(files: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(path, files[path]) for path in PYTHON_ENTRY_FILES if path in files]


def _module(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".").removeprefix("src.")


def app_target(files: Mapping[str, str], framework: str) -> tuple[str, str] | None:
    """(``module:variable``, the file) of the first entry file that makes the app (``app = Flask(__name__)``),
    or of a Flask factory (``def create_app``: ``module:create_app()``)."""
    made = re.compile(rf"^(\w+)\s*(?::[^=]+)?=\s*(?:\w+\.)?{framework}\(", re.MULTILINE)
    for path, text in _python_files(files):
        if match := made.search(text):
            return f"{_module(path)}:{match.group(1)}", path
        if framework == "Flask" and re.search(r"^def create_app\(", text, re.MULTILINE):
            return f"{_module(path)}:create_app()", path
    return None


def django_settings(files: Mapping[str, str]) -> str | None:
    """The settings module manage.py names (``mysite.settings``)."""
    match = re.search(r"DJANGO_SETTINGS_MODULE['\"]\s*,\s*['\"]([\w.]+)['\"]", files.get("manage.py", ""))
    return match.group(1) if match else None


def detect(files: Mapping[str, str], *, directory_name: str) -> Detection:
    """The project's kind from its files (path -> text, those of :data:`FILES_READ` that exist)."""
    python = python_project(files)
    if python is not None:
        return _detect_python(files, python, directory_name)
    if "package.json" in files:
        return _detect_node(files, directory_name)
    return Detection(Kind.UNKNOWN, project_name(directory_name), findings=(
        "no requirements.txt, pyproject.toml or package.json at the top of the project",
    ), advice=("nothing to build or start was found: the artifact is the commit's files as they are; add "
               "artifact.build and deploy.services for your app",))


def _detect_python(files: Mapping[str, str], python: PythonProject, directory_name: str) -> Detection:
    name = project_name(python.dist_name or directory_name)
    declared = f"{python.source} lists"
    if "manage.py" in files or python.has("django"):
        settings = django_settings(files)
        seen = [f"{declared} django"] if python.has("django") else []
        seen += [f"manage.py names the settings {settings}"] if settings else []
        advice = () if settings else ("manage.py does not name DJANGO_SETTINGS_MODULE: check the service's command",)
        package = settings.rsplit(".", 1)[0] if settings else name
        return Detection(Kind.DJANGO, name, tuple(seen) or ("manage.py",), python, entry=package, advice=advice)
    for kind, dep, framework in ((Kind.FASTAPI, "fastapi", "FastAPI"), (Kind.FLASK, "flask", "Flask")):
        if python.has(dep):
            found = app_target(files, framework)
            seen = [f"{declared} {dep}"] + ([f"{found[1]} makes the app: {found[0]}"] if found else [])
            advice = () if found else (f"no entry file making {framework}(...) found: check the service's command",)
            return Detection(kind, name, tuple(seen), python, entry=found[0] if found else "app:app", advice=advice)
    return Detection(Kind.PYTHON, name, (f"{python.source} (no Flask, Django or FastAPI among its dependencies)",),
                     python, advice=("no web framework found: add your app's process under deploy.services",))


def _detect_node(files: Mapping[str, str], directory_name: str) -> Detection:
    try:
        package = json.loads(files["package.json"])
    except ValueError:
        package = {}
    package = package if isinstance(package, dict) else {}
    scripts = {str(k): str(v) for k, v in (package.get("scripts") or {}).items()}
    lock = next((f for f in NODE_LOCK_FILES if f in files), None)
    entry = _node_entry(files, scripts, package.get("main"))
    seen = ["package.json"] + ([f"lock file {lock}"] if lock else [])
    seen += [f"the app starts with {entry}"] if entry else (["npm start"] if "start" in scripts else [])
    advice: list[str] = [] if lock else ["no lock file: commit package-lock.json so that every build installs the same"]
    if not entry and "start" not in scripts:
        advice.append("no start script and no server.js or index.js: check the service's command")
    name = project_name(str(package.get("name") or directory_name))
    node = NodeProject(lock_file=lock, scripts=scripts, entry=entry)
    return Detection(Kind.NODE, name, tuple(seen), node=node, advice=tuple(advice))


def _node_entry(files: Mapping[str, str], scripts: Mapping[str, str], main: object) -> str | None:
    """The file the app starts from: ``node FILE`` in the start script, else ``main``, else a usual name."""
    start = re.fullmatch(r"\s*node\s+([\w./-]+\.m?js)\s*", scripts.get("start", ""))
    if start:
        return start.group(1).removeprefix("./")
    if isinstance(main, str) and main.removeprefix("./") in files:
        return main.removeprefix("./")
    return next((f for f in NODE_ENTRY_FILES if f in files), None)
