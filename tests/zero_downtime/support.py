"""The zero-downtime setup: the example app on SSH hosts of the test bed behind a real nginx."""

from __future__ import annotations

import sys
from typing import Any

import yaml

from slipway.model.routing import Backend
from tests.e2e.conftest import Project
from tests.fleet.conftest import ssh_target
from tests.support.nginx import NginxServer
from tests.support.ports import free_port
from tests.support.sshbed import SSHTestBed

HOSTS = 3


def blue_green(ports: tuple[int, int]) -> dict[str, Any]:
    """The blue/green strategy with each slot's app on its own port."""
    return {"kind": "blue_green", "slot_vars": {"blue": {"port": ports[0]}, "green": {"port": ports[1]}}}


def behind_nginx(
    project: Project,
    bed: SSHTestBed,
    *,
    strategy: dict[str, Any],
    breaker: dict[str, Any] | None = None,
    port: int | None = None,
    hosts: int = HOSTS,
) -> NginxServer:
    """Start nginx and point the project at ``hosts`` SSH hosts behind it: one environment, production."""
    port = port or free_port()
    nginx = NginxServer([Backend(host=h.address, port=port) for h in bed.hosts[:hosts]], worker_processes=2)
    nginx.start()
    config = yaml.safe_load((project.root / "slipway.yml").read_text())
    config.pop("migrations", None)  # each host keeps its own SQLite database: /health only needs SELECT 1
    hooks = config["deploy"]["hooks"]
    hooks["activate"] = [f"SLIPWAY_PYTHON={sys.executable} {cmd}" for cmd in hooks["activate"]]
    production: dict[str, Any] = {
        "url": nginx.url,
        "vars": {"port": port},
        "targets": [ssh_target(bed, i, f"web-{i + 1}") for i in range(hosts)],
        "strategy": strategy,
        "router": {
            "kind": "nginx",
            "group": "app",
            "port": "{{ vars.port }}",
            "conf_dir": str(nginx.conf_dir),
            "config": str(nginx.config),
            "prefix": str(nginx.root),
            "pid_file": str(nginx.pid_file),
            "nginx": nginx.binary,
            "drain_timeout": 10,
        },
        "readiness": {"path": "/health", "successes": 3, "interval": 0.05, "deadline": 8},
    }
    if breaker is not None:
        production["circuit_breaker"] = breaker
    config["environments"] = {"production": production}
    config["pipeline"] = [
        {"name": "build", "kind": "build"},
        {"name": "deploy", "kind": "deploy", "environment": "production"},
    ]
    (project.root / "slipway.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.ports["production"] = port
    project.commit(f"production: {hosts} SSH hosts behind nginx")
    return nginx
