"""The layers hold at import time: the pure model loads no adapter, no engine and no database library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

#: Packages the model must never pull in: adapters, the engine, the clock and the database library.
FORBIDDEN = (
    "slipway.routers", "slipway.targets", "slipway.clock", "slipway.store", "slipway.engine",
    "slipway.checks", "slipway.services", "slipway.cli", "slipway.artifacts", "sqlalchemy", "httpx",
)


def loaded_after(statement: str) -> list[str]:
    """The module names a fresh interpreter holds after running ``statement``."""
    script = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=50
    )
    return list(json.loads(result.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import slipway.model.config",
        "import slipway.model.records",
        "import slipway.model.strategy",
        "import slipway.model.checks",
        "from slipway.model.config import Environment, Project",
    ],
)
def test_the_model_imports_no_adapter(statement: str) -> None:
    loaded = loaded_after(statement)
    leaks = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaks == [], f"{statement!r} loaded {leaks}"
    assert all(m == "slipway" or m.split(".")[1] in ("model", "errors") for m in loaded if m.startswith("slipway"))


CONTAINER_PROJECT = """\
name: shop
artifact:
  kind: image
  name: shop/web
  registry: {address: "registry.example.com:5000"}
  smoke: [{kind: http, url: "http://container:8080/health"}]
services:
  web: {port: 8080}
  worker: {command: [python, -m, shop.worker], depends_on: [%s]}
environments:
  prod:
    targets: [{kind: container, engine: "unix:///run/podman/podman.sock"}]
pipeline: [{name: build, kind: build}, {name: deploy, kind: deploy, environment: prod}]
"""


@pytest.mark.parametrize(("depends_on", "outcome"), [("web", "ok"), ("worker", "services depend on each other in a cycle: worker -> worker")])
def test_reading_a_container_project_loads_only_the_model(depends_on: str, outcome: str) -> None:
    statement = f"""\
from pathlib import Path
from slipway.config import parse_config
from slipway.errors import ConfigError
try:
    parse_config({CONTAINER_PROJECT % depends_on!r}, path=Path("/p/slipway.yml"))
    print("ok")
except ConfigError as exc:
    print(exc.reason)"""
    script = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=50
    )
    said, modules = result.stdout.splitlines()
    assert said == outcome
    leaks = [m for m in json.loads(modules) if m.startswith(("slipway.targets", "slipway.artifacts", "docker"))]
    assert leaks == []


def test_old_import_paths_still_name_the_same_objects() -> None:
    from slipway.checks.spec import HttpCheck as OldHttpCheck
    from slipway.engine.strategy import Batch as OldBatch
    from slipway.engine.strategy import Rolling as OldRolling
    from slipway.model.checks import HttpCheck
    from slipway.model.strategy import Batch, Rolling
    from slipway.model.traffic import NginxRouterConfig
    from slipway.routers.nginx import NginxRouterConfig as OldNginxRouterConfig

    assert (OldHttpCheck, OldBatch, OldRolling, OldNginxRouterConfig) == (
        HttpCheck, Batch, Rolling, NginxRouterConfig
    )
