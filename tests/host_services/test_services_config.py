"""deploy.services in slipway.yml: valid services load with their defaults; every mistake names its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.engine.planner import Action, ReleaseInfo
from slipway.errors import ConfigError
from slipway.model.records import HostRelease
from slipway.services.checks import host_context
from slipway.services.host_services import render_service
from slipway.services.releases import hosts_of, make_plan, revert_steps
from slipway.services.validate import validate_project

pytestmark = pytest.mark.timeout(60)

GOOD = """\
name: app
artifact:
  paths: [app]
deploy:
  services:
    web:
      command: python3 -m app.server --port $PORT
      port: 8000
      instances: 2
      stop_signal: SIGINT
      stop_timeout: 20
    worker:
      command: python3 -m app.worker
      secrets: [TOKEN]
  hooks:
    activate: "echo activated"
environments:
  dev:
    secrets: {TOKEN: {env: TOKEN}}
    targets:
      - {kind: local, name: d1, path: t/dev}
pipeline:
  - {name: build, kind: build}
  - {name: deploy-dev, kind: deploy, environment: dev}
"""


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse_config(text, path=Path("/p/slipway.yml"))
    return err.value


def test_services_load_with_their_defaults() -> None:
    services = parse_config(GOOD, path=Path("/p/slipway.yml")).project.deploy.services
    web, worker = services["web"], services["worker"]
    assert (web.port, web.instances) == (8000, 2) and web.stop_signal == "INT" and web.stop_timeout == 20
    assert worker.port is None and worker.instances == 1 and worker.stop_signal == "TERM"
    assert worker.stop_timeout == 10 and worker.secrets == ("TOKEN",)


def test_the_plan_restarts_services_after_the_switch_and_a_revert_restarts_them_too() -> None:
    loaded = parse_config(GOOD, path=Path("/p/slipway.yml"))
    plan = make_plan(loaded, "dev", ReleaseInfo("r1", "sha256:" + "a" * 64, "c" * 40))
    actions = [s.action for s in plan.phase_steps("d1", "activate")]
    assert actions == [Action.SWITCH, Action.SERVICES, Action.HOOK]
    assert plan.phase_steps("d1", "activate")[1].label == "activate: restart-services (web, worker)"
    before = HostRelease("dev", "d1", "r0", "sha256:" + "b" * 64, "d" * 40, 0.0, 1, None)
    assert [s.action for s in revert_steps(loaded, "dev", "d1", before)] == [Action.SERVICES, Action.HOOK]
    assert hosts_of(loaded, "dev")[0].name == "d1"


def test_a_project_without_services_plans_no_restart() -> None:
    text = GOOD.split("  services:")[0] + "  hooks:" + GOOD.split("  hooks:")[1]
    loaded = parse_config(text.replace("secrets: {TOKEN: {env: TOKEN}}\n    ", ""), path=Path("/p/slipway.yml"))
    plan = make_plan(loaded, "dev", ReleaseInfo("r1", "sha256:" + "a" * 64, "c" * 40))
    assert [s.action for s in plan.phase_steps("d1", "activate")] == [Action.SWITCH, Action.HOOK]


@pytest.mark.parametrize(
    ("old", "new", "key_path", "line", "words"),
    [
        ("      instances: 2", "      instancez: 2", "deploy.services.web.instancez", 9, "did you mean 'instances'"),
        ("      port: 8000", "      port: 70000", "deploy.services.web.port", 8, "65535"),
        ("      instances: 2", "      instances: 0", "deploy.services.web.instances", 9, "greater than or equal to 1"),
        ("      port: 8000", "      port: 65535", "deploy.services.web", 7, "past port 65535"),
        ("      stop_signal: SIGINT", "      stop_signal: STOP", "deploy.services.web.stop_signal", 10, "term"),
        ("      secrets: [TOKEN]", "      secrets: [TOKN]", "deploy.services.worker.secrets[0]", 14, "TOKN"),
        ("    worker:", "    Worker!:", "deploy.services.Worker!", 13, "a-z, 0-9"),
    ],
)
def test_a_mistake_in_a_service_names_its_line(old: str, new: str, key_path: str, line: int, words: str) -> None:
    assert old in GOOD
    err = error_of(GOOD.replace(old, new))
    assert err.key_path == key_path, str(err)
    assert err.line == line, str(err)
    assert words.lower() in (str(err) + err.hint).lower(), str(err) + err.hint


def test_services_on_hosts_are_refused_with_blue_green_slots() -> None:
    text = GOOD.replace(
        "    targets:\n", "    strategy: {kind: blue_green}\n    router: {kind: nginx, config: up.conf}\n    targets:\n"
    )
    err = error_of(text)
    assert err.key_path is not None and err.key_path.startswith("environments.dev"), str(err)


RELEASE = ReleaseInfo("r1", "sha256:" + "a" * 64, "c" * 40)


def test_a_templated_port_is_rendered_per_environment_and_validate_checks_it() -> None:
    text = GOOD.replace("      port: 8000", '      port: "{{ vars.port }}"').replace(
        "    secrets: {TOKEN", "    vars: {port: 9100}\n    secrets: {TOKEN"
    )
    loaded = parse_config(text, path=Path("/p/slipway.yml"))
    host = hosts_of(loaded, "dev")[0]
    web = render_service(loaded, "web", host_context(loaded, "dev", RELEASE, host))
    assert web.ports == (9100, 9101) and web.command == "python3 -m app.server --port $PORT"
    validate_project(loaded)

    bad = parse_config(text.replace("{port: 9100}", "{port: web}"), path=Path("/p/slipway.yml"))
    with pytest.raises(ConfigError) as err:
        validate_project(bad)
    assert err.value.key_path == "deploy.services.web.port" and err.value.line == 8
    assert "'web' is not a port" in str(err.value)
    edge = parse_config(text.replace("{port: 9100}", "{port: 65535}"), path=Path("/p/slipway.yml"))
    with pytest.raises(ConfigError, match="past port 65535"):
        validate_project(edge)


def test_an_undefined_variable_in_a_service_fails_validate_at_its_line() -> None:
    loaded = parse_config(GOOD.replace("python3 -m app.worker", "python3 -m {{ vars.module }}"),
                          path=Path("/p/slipway.yml"))
    with pytest.raises(ConfigError) as err:
        validate_project(loaded)
    assert err.value.key_path == "deploy.services.worker.command" and err.value.line == 13
