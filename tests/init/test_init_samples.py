"""Issue 15: ``slipway init`` wrote a config that failed (``paths: [app]``, nothing started, ``.slipway/`` not
ignored). On a generated Flask, Django and Node project it now writes one that ``slipway validate`` passes and
whose first ``slipway run`` deploys dev, with the app started and answering, and parks at the approval gate."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Project
from tests.init.conftest import free_ports

pytestmark = pytest.mark.timeout(400)
Make = Callable[[str], Project]

FLASK_APP = '''from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "hello from flask"
'''
NODE_SERVER = '''const http = require("http");
const server = http.createServer((req, res) => res.end("hello from node\\n"));
server.listen(Number(process.env.PORT || 3000));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
'''


def get(url: str) -> str:
    return fetch(url)[0]


def fetch(url: str) -> tuple[str, str]:
    """The body and the Server header of a GET."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode()), str(response.headers.get("Server", ""))


def init_and_run(proj: Project, detected: str) -> dict[str, object]:
    """``slipway init`` (it must say what it detected), validate, commit, run: the run as JSON."""
    init = proj.slipway("init")
    assert detected in init.stdout, init.stdout
    free_ports(proj)
    proj.slipway("validate")
    proj.commit("slipway init")
    run = proj.slipway("run", "--json", timeout=360)
    data = json.loads(run.stdout)
    assert data["state"] == "waiting", run.stderr[-3000:]
    stages = {s["name"]: s["state"] for s in data["stages"]}
    assert stages["deploy-dev"] == "succeeded" and stages["approve-production"] == "waiting", stages
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=proj.root, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status  # .slipway/ (state, artifacts, deploy roots) is ignored, all else committed
    return dict(data)


def test_init_flask_app_with_gunicorn_runs_to_the_gate(sample: Make) -> None:
    proj = sample("flaskapp")
    (proj.root / "requirements.txt").write_text("Flask>=3\ngunicorn\n")
    (proj.root / "app.py").write_text(FLASK_APP)
    (proj.root / ".gitignore").write_text("*.log")  # no newline at its end: .slipway/ goes on a line of its own
    init_and_run(proj, "a Flask app (requirements.txt lists flask; app.py makes the app: app:app)")
    assert (proj.root / ".gitignore").read_text() == "*.log\n.slipway/\n"
    body, server = fetch(f"http://127.0.0.1:{proj.ports['dev']}/")
    assert (body, server) == ("hello from flask", "gunicorn")  # not the development server
    again = proj.slipway("init", check=False)
    assert again.returncode == 2 and "--force" in again.stderr, again.stderr


def test_init_django_project_runs_to_the_gate(sample: Make) -> None:
    proj = sample("djangoapp")
    admin = Path(sys.executable).with_name("django-admin")
    subprocess.run([str(admin), "startproject", "mysite", "."], cwd=proj.root, check=True, timeout=60)
    (proj.root / "requirements.txt").write_text("Django\n")
    out = init_and_run(proj, "a Django project (requirements.txt lists django; manage.py names the settings mysite.settings)")
    assert "django" in get(f"http://127.0.0.1:{proj.ports['dev']}/").lower(), out
    release = proj.root / ".slipway/targets/dev/current"
    assert (release / "db.sqlite3").stat().st_size > 0  # the migrate hook ran there


def test_init_fastapi_app_in_a_pyproject_with_requirements_runs_to_the_gate(sample: Make) -> None:
    proj = sample("apiapp")
    (proj.root / "pyproject.toml").write_text('[project]\nname = "shop-api"\nversion = "1"\n')
    (proj.root / "requirements.txt").write_text("fastapi\nuvicorn\n")
    (proj.root / "main.py").write_text(
        'from fastapi import FastAPI\n\napi = FastAPI()\n\n\n@api.get("/")\ndef index() -> dict[str, str]:\n'
        '    return {"hello": "fastapi"}\n')
    init_and_run(proj, "a FastAPI app (requirements.txt lists fastapi; main.py makes the app: main:api)")
    body, server = fetch(f"http://127.0.0.1:{proj.ports['dev']}/")
    assert (json.loads(body), server) == ({"hello": "fastapi"}, "uvicorn")
    assert "name: shop-api" in (proj.root / "slipway.yml").read_text()  # pyproject's name, not the directory's


def test_init_node_app_runs_to_the_gate(sample: Make) -> None:
    proj = sample("nodeapp")
    package = {"name": "hello-node", "version": "1.0.0", "scripts": {"start": "node server.js", "test": "node test.js"}}
    (proj.root / "package.json").write_text(json.dumps(package))
    (proj.root / "server.js").write_text(NODE_SERVER)
    (proj.root / "test.js").write_text('require("fs").writeFileSync("/dev/stdout", "node tests ran\\n");\n')
    subprocess.run(["npm", "install", "--package-lock-only"], cwd=proj.root, env=proj.env, check=True,
                   capture_output=True, timeout=120)
    init_and_run(proj, "a Node app (package.json; lock file package-lock.json; the app starts with server.js)")
    assert get(f"http://127.0.0.1:{proj.ports['dev']}/") == "hello from node\n"
    logs = proj.slipway("logs", "1", "--stage", "test").stdout
    assert "node tests ran" in logs, logs


def test_init_unknown_project_writes_a_generic_config_that_runs(sample: Make) -> None:
    proj = sample("static")
    (proj.root / "index.html").write_text("<p>hello</p>\n")
    (proj.root / ".gitignore").write_text("/.slipway\n")
    init_and_run(proj, "no known project kind (no requirements.txt, pyproject.toml or package.json")
    assert (proj.root / ".gitignore").read_text() == "/.slipway\n"  # already ignored: left as it was
    assert (proj.root / ".slipway/targets/dev/current/index.html").read_text() == "<p>hello</p>\n"
