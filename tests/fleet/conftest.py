"""Fleet tests: the example project deployed to real OpenSSH hosts of the test bed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import Project, project  # noqa: F401  (fixture)
from tests.support.ports import free_port
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
from tests.support.sshbed import SSHTestBed


def ssh_target(bed: SSHTestBed, index: int, name: str) -> dict[str, Any]:
    host = bed.hosts[index]
    return {
        "kind": "ssh", "name": name, "address": host.address, "port": host.port, "user": host.username,
        "key": str(host.client_key), "known_hosts": str(host.known_hosts), "path": "/srv/app",
    }


def use_fleet(
    proj: Project,
    bed: SSHTestBed,
    layout: dict[str, list[int]],
    *,
    databases: dict[str, str] | None = None,
    commit: bool = True,
) -> None:
    """Point the named environments at SSH hosts of ``bed`` (by index); keep the rest local.

    Several hosts of one environment share one database: ``databases`` maps an environment to a
    PostgreSQL URL, given to Slipway (migrations) and to the app (DATABASE_URL) as a secret. The app on
    the hosts runs with this test's interpreter, which has psycopg.
    """
    config_path = proj.root / "slipway.yml"
    config = yaml.safe_load(config_path.read_text())
    hooks = config["deploy"]["hooks"]
    hooks["activate"] = [f"SLIPWAY_PYTHON={sys.executable} {cmd}" for cmd in hooks["activate"]]
    for env_name, url in (databases or {}).items():
        var = f"FLEET_DATABASE_URL_{env_name.upper()}"
        proj.env[var] = url
        config["environments"][env_name]["secrets"] = {"DATABASE_URL": {"env": var}}
        config["environments"][env_name]["database"] = {"secret": "DATABASE_URL"}
    for env_name, indexes in layout.items():
        env = config["environments"][env_name]
        port = free_port()
        proj.ports[env_name] = port
        env["vars"]["port"] = port
        env["targets"] = [ssh_target(bed, i, f"{env_name}-{n + 1}") for n, i in enumerate(indexes)]
        env["url"] = f"http://{bed.hosts[indexes[0]].address}:{{{{ vars.port }}}}"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    if commit:
        proj.commit("deploy staging and production to SSH hosts")


def host_path(bed: SSHTestBed, index: int, rel: str) -> Path:
    """What host ``index`` sees as /srv/<rel>."""
    return bed.hosts[index].host_dir / rel
