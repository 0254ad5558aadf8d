"""An image project for the pipeline tests: a git repository with a Dockerfile and its slipway.yml.

The app is busybox httpd on the session's base image (built from scratch by the podman fixture): ``/version``
and ``/health`` are files the tests edit and commit. Each environment has its own nginx in front; a target
may reach the engine through an SSH tunnel (a test bed host) instead of the local socket.
"""

from __future__ import annotations

import http.client
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from tests.e2e.conftest import GIT_ENV, Project
from tests.support.nginx import NginxServer
from tests.support.podman import BASE_IMAGE, HTTP_PORT, TEST_LABEL, PodmanService
from tests.support.sshbed import SSHHost

REGISTRY_PASSWORD = "registry-pass-do-not-log"
TOKENS = {"dev": "dev-token-do-not-log", "staging": "staging-token-do-not-log"}
FAST_CHECK: dict[str, Any] = {"retries": 12, "timeout": 2, "backoff": {"initial": 0.05, "factor": 1.5, "max": 0.25}}
HTTPD = f"exec httpd -f -p {HTTP_PORT} -h /www"

DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY www/ /www/
LABEL {TEST_LABEL}=app
EXPOSE {HTTP_PORT}
CMD ["httpd", "-f", "-p", "{HTTP_PORT}", "-h", "/www"]
"""


def router(nginx: NginxServer) -> dict[str, Any]:
    """The environment's ``router:`` for a test nginx."""
    return {
        "kind": "nginx", "group": "app", "conf_dir": str(nginx.conf_dir), "config": str(nginx.config),
        "prefix": str(nginx.root), "pid_file": str(nginx.pid_file), "nginx": nginx.binary, "drain_timeout": 10,
    }


def ssh_engine(host: SSHHost, podman: PodmanService, name: str) -> dict[str, Any]:
    """A container target whose engine is the podman socket reached through ``host``'s sshd."""
    return {
        "kind": "container", "name": name,
        "engine": f"ssh://{host.username}@{host.address}:{host.port}{podman.socket_path}",
        "key": str(host.client_key), "known_hosts": str(host.known_hosts),
    }


def config(app: str, podman: PodmanService, registry: str, nginx: dict[str, NginxServer],
           staging_targets: list[dict[str, Any]]) -> dict[str, Any]:
    """slipway.yml: image artifact, web + worker services, dev (one engine) and staging (rolling)."""
    health = {"kind": "http", "url": f"http://container:{HTTP_PORT}/health", "body_contains": "ok", **FAST_CHECK}
    return {
        "version": 1,
        "name": app,
        "artifact": {
            "kind": "image", "name": f"{app}/web", "engine": podman.base_url, "timeout": 120,
            "registry": {"address": registry, "username": "ci", "password": {"env": "REGISTRY_PASSWORD"}},
            "smoke": [health],
        },
        "services": {
            "web": {
                "port": HTTP_PORT, "env": {"GREETING": "hello {{ environment.name }}", "TARGET": "{{ host.name }}"},
                "secrets": ["API_TOKEN"], "readiness": [health], "stop_timeout": 5,
            },
            "worker": {"command": ["sh", "-c", "while true; do sleep 1; done"], "depends_on": ["web"],
                       "settle": 0.5, "stop_timeout": 5},
        },
        "environments": {
            "dev": {
                "url": nginx["dev"].url, "secrets": {"API_TOKEN": {"env": "DEV_TOKEN"}}, "router": router(nginx["dev"]),
                "targets": [{"kind": "container", "name": "dev-1", "engine": podman.base_url}],
            },
            "staging": {
                "url": nginx["staging"].url, "secrets": {"API_TOKEN": {"env": "STAGING_TOKEN"}},
                "router": router(nginx["staging"]), "strategy": {"kind": "rolling", "batch_size": 1},
                "targets": staging_targets,
            },
        },
        "pipeline": [
            {"name": "build", "kind": "build"},
            {"name": "deploy-dev", "kind": "deploy", "environment": "dev"},
            {"name": "deploy-staging", "kind": "deploy", "environment": "staging"},
        ],
    }


def image_project(root: Path, slipway_yml: dict[str, Any]) -> Project:
    """The app (v1) and its slipway.yml, committed to a new git repository."""
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "www").mkdir()
    (root / "www/version").write_text("v1\n")
    (root / "www/health").write_text("ok\n")
    env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester", "REGISTRY_PASSWORD": REGISTRY_PASSWORD,
           "DEV_TOKEN": TOKENS["dev"], "STAGING_TOKEN": TOKENS["staging"]}
    env.pop("SLIPWAY_DATABASE_URL", None)
    env.pop("DOCKER_HOST", None)
    project = Project(root=root, env=env)
    write_config(project, slipway_yml)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, env=env)
    project.commit("v1")
    return project


def write_config(project: Project, slipway_yml: dict[str, Any]) -> None:
    """Write slipway.yml (not committed)."""
    (project.root / "slipway.yml").write_text(yaml.safe_dump(slipway_yml, sort_keys=False))


def get(nginx: NginxServer, path: str = "/version") -> tuple[int, str]:
    """One GET through nginx on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        conn.close()
