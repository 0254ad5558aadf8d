"""``slipway status`` shows where each host stands in its router: in rotation, drained, or unknown and why.

The example project (local targets) with a ``router:`` block on production; the router's include file is
written as Slipway writes it (or broken by hand). No deployment is needed: status reads the router.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slipway.model.routing import Backend, RouterState
from slipway.routers.nginx import render_upstream
from tests.e2e.conftest import Project

pytestmark = pytest.mark.timeout(120)


def with_router(project: Project, conf_dir: Path) -> None:
    config = yaml.safe_load((project.root / "slipway.yml").read_text())
    config["environments"]["production"]["router"] = {
        "kind": "nginx", "group": "app", "port": "{{ vars.port }}", "conf_dir": str(conf_dir),
    }
    (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.commit("production behind nginx")


def include_file(conf_dir: Path) -> Path:
    conf_dir.mkdir(exist_ok=True)
    return conf_dir / "slipway_app.conf"


def test_a_drained_host_shows_as_drained(project: Project, tmp_path: Path) -> None:
    with_router(project, tmp_path / "nginx")
    port = project.ports["production"]
    state = RouterState(group="app", backends=(Backend(port=port, down=True), Backend(port=port + 1)))
    include_file(tmp_path / "nginx").write_text(render_upstream(state))
    production = project.status()["production"]
    assert production["router"] == {"group": "app", "error": None}
    assert [(h["name"], h["router"]) for h in production["hosts"]] == [("production-1", "drained")]
    assert project.status()["dev"]["router"] is None and "router" not in project.status()["dev"]["hosts"][0]
    table = project.slipway("status").stdout
    assert "production-1=- (drained)" in table, table

    include_file(tmp_path / "nginx").write_text(render_upstream(state.model_copy(update={
        "backends": (Backend(port=port), Backend(port=port + 1))})))
    assert project.status()["production"]["hosts"][0]["router"] == "in rotation"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "nginx has no upstream group 'app' managed by Slipway"),
        ("upstream slipway_app { server 127.0.0.1:1; }\n", "has no slipway-state line"),
        ('# slipway-state: {"group": "app", "backends": [{"port": "x"}]}\n', "slipway-state line is not valid"),
    ],
    ids=["no-file", "not-slipways", "broken-state"],
)
def test_a_router_that_cannot_be_read_shows_unknown_with_the_reason(
    project: Project, tmp_path: Path, content: str | None, reason: str
) -> None:
    with_router(project, tmp_path / "nginx")
    if content is not None:
        include_file(tmp_path / "nginx").write_text(content)
    production = project.status()["production"]
    assert reason in production["router"]["error"], production["router"]
    assert production["hosts"][0]["router"] == "unknown"
    proc = project.slipway("status")
    assert "Traceback" not in proc.stderr and "production-1=- (unknown)" in proc.stdout, proc.stdout
    assert "production: router state unknown:" in proc.stdout and reason.split("'")[0] in proc.stdout, proc.stdout
