"""What ``slipway init`` detects (model/project_kind.py) and writes (model/starter.py): pure, from file texts.
Every config it writes for every kind is a valid slipway.yml (parsed by the same loader as 'validate')."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slipway import DOCS_URL
from slipway.config import parse_config
from slipway.model.project_kind import Kind, detect, project_name, requirement_name
from slipway.model.starter import render_config, server_advice

FLASK = {"requirements.txt": "flask==3.1\n# web\ngunicorn>=22 ; python_version >= '3.8'\n-r other.txt\n",
         "app.py": "from flask import Flask\napp = Flask(__name__)\n"}
FACTORY = {"requirements.txt": "Flask\n", "app/__init__.py": "import flask\n\ndef create_app():\n    return flask.Flask('x')\n"}
FASTAPI = {"pyproject.toml": '[project]\nname = "shop-api"\ndependencies = ["fastapi[standard]>=0.110"]\n'
                             '[project.optional-dependencies]\ntest = ["pytest"]\n',
           "main.py": "from fastapi import FastAPI\napi: FastAPI = FastAPI()\n"}
DJANGO = {"requirements.txt": "Django>=5\ngunicorn\n",
          "manage.py": "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n"}
NODE = {"package.json": json.dumps({"name": "@acme/web", "main": "index.js",
                                    "scripts": {"start": "node ./src/server.js", "build": "tsc",
                                                "test": 'echo "Error: no test specified" && exit 1'}}),
        "yarn.lock": ""}
PLAIN = {"requirements.txt": "requests\n"}


def test_requirement_names_are_normalised_and_options_skipped() -> None:
    assert requirement_name("Flask_Login[extra] >= 1") == ("flask-login", "[extra]")
    assert requirement_name("  -e .") is None and requirement_name("# x") is None
    assert requirement_name("https://example.com/x.whl") is None
    assert project_name("@acme/web app") == "acme-web-app" and project_name("...") == "app"


@pytest.mark.parametrize(("files", "kind", "entry", "name"), [
    (FLASK, Kind.FLASK, "app:app", "demo"),
    (FACTORY, Kind.FLASK, "app:create_app()", "demo"),
    (FASTAPI, Kind.FASTAPI, "main:api", "shop-api"),
    (DJANGO, Kind.DJANGO, "mysite", "demo"),
    (NODE, Kind.NODE, None, "acme-web"),
    (PLAIN, Kind.PYTHON, None, "demo"),
    ({"README.md": "hi"}, Kind.UNKNOWN, None, "demo"),
])
def test_detects_the_kind_and_the_entry(files: dict[str, str], kind: Kind, entry: str | None, name: str) -> None:
    detection = detect(files, directory_name="demo")
    assert (detection.kind, detection.entry, detection.name) == (kind, entry, name)
    assert detection.findings


def _config(files: dict[str, str]) -> dict[str, object]:
    text = render_config(detect(files, directory_name="demo"))
    parse_config(text, path=Path("/project/slipway.yml"))  # what 'slipway validate' loads first
    assert f"{DOCS_URL}/config.md" in text
    return dict(yaml.safe_load(text))


def test_python_ships_a_wheelhouse_and_each_host_makes_its_venv() -> None:
    config = _config(FLASK)
    assert config["artifact"]["build"] == [  # type: ignore[index]
        "test -d wheels || python3 -m pip wheel --quiet --disable-pip-version-check --wheel-dir wheels -r requirements.txt"]
    assert config["artifact"]["cache"] == [{"key": ["requirements.txt"], "paths": ["wheels"]}]  # type: ignore[index]
    install = config["deploy"]["hooks"]["install"][0]  # type: ignore[index]
    assert "python3 -m venv .venv" in install and "--no-index --find-links wheels -r requirements.txt" in install
    web = config["deploy"]["services"]["web"]  # type: ignore[index]
    assert web == {"command": ".venv/bin/gunicorn --bind {{ host.address }}:$PORT app:app", "port": "{{ vars.port }}"}
    stages = [s["name"] for s in config["pipeline"]]  # type: ignore[attr-defined]
    assert stages == ["build", "test", "deploy-dev", "approve-production", "deploy-production"]


def test_each_framework_gets_its_server() -> None:
    commands = {name: _config(files)["deploy"]["services"]["web"]["command"]  # type: ignore[index]
                for name, files in (("factory", FACTORY), ("fastapi", FASTAPI), ("django", DJANGO))}
    assert commands == {
        "factory": ".venv/bin/flask --app app run --host {{ host.address }} --port $PORT",
        "fastapi": ".venv/bin/uvicorn main:api --host {{ host.address }} --port $PORT",
        "django": ".venv/bin/gunicorn --bind {{ host.address }}:$PORT mysite.wsgi",
    }
    assert server_advice(detect(FACTORY, directory_name="d"))  # a development server: said so
    fastapi = _config(FASTAPI)
    assert fastapi["artifact"]["build"][0].endswith("--wheel-dir wheels .")  # type: ignore[index]
    assert fastapi["deploy"]["hooks"]["install"][0].endswith("--find-links wheels shop-api")  # type: ignore[index]
    assert ".venv/bin/python -m pytest -q" in fastapi["pipeline"][1]["run"]  # type: ignore[index]


def test_node_installs_from_its_lock_file_and_runs_its_entry() -> None:
    config = _config(NODE)
    assert config["artifact"]["build"] == ["test -d node_modules || yarn install --frozen-lockfile", "npm run build"]  # type: ignore[index]
    assert config["artifact"]["cache"] == [{"key": ["yarn.lock"], "paths": ["node_modules"]}]  # type: ignore[index]
    assert config["deploy"]["services"]["web"]["command"] == "node src/server.js"  # type: ignore[index]
    assert config["pipeline"][1]["run"] == ["node --check src/server.js"]  # type: ignore[index]  # not npm's placeholder


def test_without_a_known_process_nothing_is_started_and_the_user_is_told() -> None:
    for files in (PLAIN, {"README.md": "hi"}):
        config = _config(files)
        assert "services" not in config["deploy"]  # type: ignore[operator]
    assert detect(PLAIN, directory_name="d").advice
