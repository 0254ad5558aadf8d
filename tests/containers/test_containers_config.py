"""slipway.yml for containers: what parses, and every mistake reported at its file:line:column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slipway.config import parse_config
from slipway.errors import ConfigError
from slipway.model.containers import ContainerTargetSpec, ImageArtifactSpec
from slipway.services.validate import validate_project

BASE: dict[str, Any] = {
    "version": 1,
    "name": "shop",
    "artifact": {
        "kind": "image", "name": "shop/web",
        "registry": {"address": "registry.example.com:5000", "username": {"env": "U"}, "password": {"env": "P"}},
        "smoke": [{"kind": "http", "url": "http://container:8080/health"}],
    },
    "services": {
        "web": {"port": 8080, "secrets": ["DATABASE_URL"],
                "readiness": [{"kind": "http", "url": "http://container:8080/health"}]},
        "worker": {"command": ["python", "-m", "shop.worker"], "depends_on": ["web"]},
    },
    "environments": {
        "prod": {
            "secrets": {"DATABASE_URL": {"env": "PROD_DATABASE_URL"}},
            "router": {"kind": "nginx", "group": "shop"},
            "strategy": {"kind": "rolling", "batch_size": 1},
            "targets": [
                {"kind": "container", "engine": "unix:///run/podman/podman.sock"},
                {"kind": "container", "engine": "ssh://deploy@app-1.example.com:2222/run/podman/podman.sock",
                 "services": ["web", "worker"], "accept_new_host_keys": True},
            ],
        },
    },
    "pipeline": [{"name": "build", "kind": "build"}, {"name": "deploy", "kind": "deploy", "environment": "prod"}],
}


def parse(data: dict[str, Any]) -> Any:
    return parse_config(yaml.safe_dump(data, sort_keys=False), path=Path("/p/slipway.yml")).project


def error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(data)
    return caught.value


def with_(path: str, value: Any) -> dict[str, Any]:
    """A deep copy of BASE with the value at ``a.b.0.c`` replaced (None deletes the key)."""
    data = yaml.safe_load(yaml.safe_dump(BASE))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = data
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


def test_the_container_config_parses_with_names_and_addresses_derived() -> None:
    project = parse(BASE)
    assert isinstance(project.artifact, ImageArtifactSpec) and project.artifact.registry.address.endswith(":5000")
    local, remote = project.environments["prod"].targets
    assert isinstance(local, ContainerTargetSpec) and isinstance(remote, ContainerTargetSpec)
    assert (local.name, local.publish_address) == ("local", "127.0.0.1")
    assert (remote.name, remote.publish_address) == ("app-1.example.com", "app-1.example.com")
    assert (remote.endpoint.user, remote.endpoint.port, remote.endpoint.path) == ("deploy", 2222, "/run/podman/podman.sock")
    assert list(project.services) == ["web", "worker"]


def test_an_archive_without_kind_still_parses() -> None:
    archive = dict(BASE, artifact={"paths": ["app"]}, services={})
    archive["environments"] = {"prod": {"targets": [{"kind": "local", "name": "a", "path": "x"}]}}
    assert parse(archive).artifact.kind == "archive"


@pytest.mark.parametrize(
    ("path", "value", "needle", "message"),
    [
        ("services.web.prot", 8080, "prot:", "unknown key 'prot'; did you mean 'port'?"),
        ("artifact.smoke", [{"kind": "command", "run": "true"}], "smoke:", "only http and tcp checks can test a container"),
        ("environments.prod.targets.0.engine", "tcp://10.0.0.1:2375", "engine: tcp:", "not a container engine address"),
        ("environments.prod.targets.1.services", ["web", "wroker"], "- wroker", "service 'wroker' is not defined"),
        ("services.web.secrets", ["DATABASE_URI"], "- DATABASE_URI", "secret 'DATABASE_URI' is not defined in environment"),
        ("services.worker.depends_on", ["worker"], "depends_on:", "cycle: worker -> worker"),
        ("artifact.registry.password", None, "registry:", "needs both username and password"),
        ("environments.prod.strategy", {"kind": "blue_green"}, "strategy:", "container targets do not use blue/green"),
    ],
)
def test_mistakes_point_at_their_line(path: str, value: Any, needle: str, message: str) -> None:
    data = with_(path, value)
    lines = yaml.safe_dump(data, sort_keys=False).splitlines()
    line = next(i for i, text in enumerate(lines, 1) if needle in text)
    problem = error(data)
    # the key, or the block value that starts on the next line
    assert message in f"{problem}; {problem.hint}" and problem.line in (line, line + 1), (str(problem), line)


def test_a_canary_of_container_targets_may_pause_for_a_person() -> None:
    strategy = parse(with_("environments.prod.strategy", {"kind": "canary", "on_success": "pause"}))
    assert strategy.environments["prod"].strategy.on_success == "pause"


def test_an_image_runs_on_container_targets_only_and_containers_need_an_image() -> None:
    ssh = with_("environments.prod.targets.1", {"kind": "ssh", "name": "h", "address": "10.0.0.2"})
    assert "a ssh target cannot run an image artifact" in str(error(ssh))
    archive = dict(with_("artifact", {"paths": ["app"]}), services={})
    assert "container targets run an image" in error(archive).hint
    assert "did you mean 'worker'" in error(with_("environments.prod.targets.1.services", ["web", "wroker"])).hint


def test_validate_renders_each_service_env_for_each_target() -> None:
    loaded = parse_config(yaml.safe_dump(BASE), path=Path("/p/slipway.yml"))
    assert "2 target(s)" in validate_project(loaded)
    typo = with_("services.web.env", {"ROLE": "{{ vars.rol }}"})
    with pytest.raises(ConfigError, match="rol"):
        validate_project(parse_config(yaml.safe_dump(typo), path=Path("/p/slipway.yml")))
