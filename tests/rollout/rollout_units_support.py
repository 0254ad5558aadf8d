"""Three units of one kind behind the same test API, for the rollout behaviour tests (test_rollout_units.py).

A *fleet* is a project whose ``production`` environment has three units, u-1, u-2 and u-3, of one kind:

* ``hosts``: release directories on three local targets (the example webapp, each app on its own port);
* ``containers``: three container targets on a real podman engine (an image pushed to a real registry).

Both take releases made the same way: :meth:`Fleet.release` commits a new version whose deployment fails
on the units named (a host's verify hook fails; a container's web service exits), or whose checks pass
once and then fail (``fail_bake``: a canary bake sees the unit go bad). :meth:`Fleet.serving` reads what
each unit really serves, from the unit itself (the app's answer, the running container's files).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import yaml

from tests.containers.pipeline_support import FAST_CHECK, image_project, write_config
from tests.e2e.conftest import Project
from tests.support.podman import HTTP_PORT, PodmanService, exec_output
from tests.support.ports import free_port

UNITS = ("u-1", "u-2", "u-3")
NOTHING = "-"

#: A host's deployment fails where the release carries app/fail-<host>.
HOST_FAIL_HOOK = "[ ! -e app/fail-{{ host.name }} ] || { echo 'this release fails here' >&2; exit 3; }"
#: Passes the first time on a release that carries app/fail-bake, fails every time after (a bake round).
HOST_BAKE_CHECK = (
    "[ ! -e app/fail-bake ] || { n=$(cat {{ paths.shared }}/bake-count 2>/dev/null || echo 0); "
    'echo $((n + 1)) > {{ paths.shared }}/bake-count; [ "$n" -lt 1 ] || { echo sick >&2; exit 1; }; }'
)
#: The container's web service exits where the image carries /www/fail-<target>.
CONTAINER_WEB = ["sh", "-c", f'[ ! -e "/www/fail-$TARGET" ] || exit 3; exec httpd -f -p {HTTP_PORT} -h /www']
#: Readiness of a container: a CGI that answers 200, except from its second call on in an image that
#: carries /www/fail-bake (the deployment's readiness check passes, the canary bake does not).
CONTAINER_HEALTH_CGI = b"""#!/bin/busybox sh
n=$(/bin/busybox cat /www/health-count 2>/dev/null || echo 0)
echo $((n + 1)) > /www/health-count
if [ -e /www/fail-bake ] && [ "$n" -ge 1 ]; then
  printf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nsick\\n'
else
  printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'
fi
"""


@dataclass
class Fleet:
    """One kind of unit, three of them, in a project driven through the ``slipway`` CLI."""

    kind: str
    project: Project
    config: dict[str, Any]
    #: The release content directory of the kind (``app`` for hosts, ``www`` for containers).
    content: Path
    ports: dict[str, int] = field(default_factory=dict)
    podman: PodmanService | None = None
    #: commit -> the version label a release carries.
    versions: dict[str, str] = field(default_factory=dict)

    def configure(self, strategy: dict[str, Any] | None = None, **environment: Any) -> None:
        """``production``'s strategy and other keys (circuit_breaker, on_failure ...), committed."""
        env = self.config["environments"]["production"]
        for key in ("strategy", "circuit_breaker", "on_failure"):
            env.pop(key, None)
        if strategy is not None:
            env["strategy"] = strategy
        env.update(environment)
        write_config(self.project, self.config)
        self.versions[self.project.commit(f"production: {strategy}")] = self.version

    @property
    def version(self) -> str:
        """The version the newest commit carries."""
        return next(reversed(self.versions.values()))

    def release(self, version: str, *, fail_on: tuple[str, ...] = (), fail_bake: bool = False) -> None:
        """Commit ``version``, failing its deployment on ``fail_on`` (and its bake, with ``fail_bake``)."""
        for old in self.content.glob("fail-*"):
            old.unlink()
        for unit in fail_on:
            (self.content / f"fail-{unit}").write_text("fail\n")
        if fail_bake:
            (self.content / "fail-bake").write_text("fail\n")
        if self.kind == "hosts":
            (self.content / "version.txt").write_text(f"{version}\n")
        else:
            (self.content / "version").write_text(f"{version}\n")
        self.versions[self.project.commit(f"release {version}")] = version

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``slipway ARGS`` (exit code not checked)."""
        return self.project.slipway(*args, check=False)

    def serving(self) -> dict[str, str]:
        """Unit -> the version it really serves now (NOTHING when nothing answers)."""
        if self.kind == "hosts":
            return {unit: self._host_version(port) for unit, port in self.ports.items()}
        assert self.podman is not None
        found = dict.fromkeys(UNITS, NOTHING)
        with contextlib.closing(self.podman.client()) as client:
            filters = {"label": [f"io.slipway.app={self.config['name']}", "io.slipway.service=web"]}
            for container in client.containers.list(filters=filters):
                output = exec_output(container, ["/bin/busybox", "cat", "/www/version"])
                unit = container.labels["io.slipway.target"]
                assert found[unit] == NOTHING, f"{unit} runs two web containers"
                found[unit] = output
        return found

    def _host_version(self, port: int) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                commit = str(json.loads(resp.read())["commit"])
        except (urllib.error.URLError, OSError):
            return NOTHING
        return self.versions.get(commit, commit)

    def latest(self) -> dict[str, Any]:
        """The newest deployment of production."""
        return self.project.json("deployments", "production")[0]  # type: ignore[no-any-return]


def host_fleet(project: Project) -> Fleet:
    """The example webapp on three local targets, each app on its own port."""
    config = yaml.safe_load((project.root / "slipway.yml").read_text())
    config.pop("migrations", None)
    ports = {unit: free_port() for unit in UNITS}
    config["deploy"]["hooks"]["verify"] = [HOST_FAIL_HOOK, *config["deploy"]["hooks"]["verify"]]
    config["deploy"]["checks"] = [{"kind": "command", "name": "bake", "run": HOST_BAKE_CHECK}]
    config["environments"] = {
        "production": {
            "vars": {"port": 0},
            "targets": [
                {"kind": "local", "name": unit, "path": f".slipway/targets/{unit}", "vars": {"port": port}}
                for unit, port in ports.items()
            ],
        }
    }
    config["pipeline"] = [
        {"name": "build", "kind": "build"},
        {"name": "deploy", "kind": "deploy", "environment": "production"},
    ]
    write_config(project, config)
    fleet = Fleet("hosts", project, config, project.root / "app", ports=ports)
    fleet.release("v1")
    return fleet


def container_fleet(root: Path, app: str, podman: PodmanService, registry: str) -> Fleet:
    """An image project (busybox httpd) on three container targets of one podman engine."""
    health = {"kind": "http", "url": f"http://container:{HTTP_PORT}/health", "body_contains": "ok", **FAST_CHECK}
    ready = {**health, "url": f"http://container:{HTTP_PORT}/cgi-bin/health"}
    config: dict[str, Any] = {
        "version": 1,
        "name": app,
        "artifact": {"kind": "image", "name": f"{app}/web", "engine": podman.base_url, "timeout": 120,
                     "registry": {"address": registry}, "smoke": [health]},
        "services": {"web": {"port": HTTP_PORT, "command": CONTAINER_WEB, "env": {"TARGET": "{{ host.name }}"},
                             "readiness": [ready], "stop_timeout": 5}},
        "environments": {"production": {"targets": [
            {"kind": "container", "name": unit, "engine": podman.base_url} for unit in UNITS]}},
        "pipeline": [{"name": "build", "kind": "build"},
                     {"name": "deploy", "kind": "deploy", "environment": "production"}],
    }
    project = image_project(root, config)
    cgi = project.root / "www/cgi-bin/health"
    cgi.parent.mkdir()
    cgi.write_bytes(CONTAINER_HEALTH_CGI)
    cgi.chmod(0o755)
    fleet = Fleet("containers", project, config, project.root / "www", podman=podman)
    fleet.release("v1")
    return fleet


def remove_containers(podman: PodmanService, app: str) -> None:
    """Every container of ``app``, whatever state it is in."""
    with contextlib.closing(podman.client()) as client:
        for container in client.containers.list(all=True, filters={"label": f"io.slipway.app={app}"}):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def stop_hosts(fleet: Fleet) -> None:
    """Stop the apps of a host fleet."""
    fleet.project.stop_apps()
    shutil.rmtree(fleet.project.root / ".slipway/targets", ignore_errors=True)

