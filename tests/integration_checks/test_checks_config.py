"""The new slipway.yml keys: did-you-mean, positions, and templates validated once rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.engine.planner import ReleaseInfo
from slipway.errors import ConfigError
from slipway.services.checks import render_all
from tests.integration_checks.conftest import config

pytestmark = pytest.mark.timeout(30)
RELEASE = ReleaseInfo("20260101T000000Z-0123456789ab", "sha256:" + "0" * 64, "f" * 40)


def load(text: str) -> None:
    render_all(parse_config(text, path=Path("slipway.yml")), RELEASE)


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value


def test_a_typo_in_a_verify_check_points_at_its_line_and_suggests_the_key() -> None:
    err = error_of(config(8080, checks="    - {kind: http, url: 'http://127.0.0.1:8080/', expect_stauts: 200}"))
    assert (err.line, err.key_path) == (13, "deploy.checks[0].expect_stauts")
    assert "did you mean 'expect_status'?" in err.hint


@pytest.mark.parametrize(
    ("extra", "key_path", "reason", "hint"),
    [
        ("    smok: []", "environments.dev.smok", "unknown key 'smok'", "did you mean 'smoke'?"),
        ("    on_failure: stop", "environments.dev.on_failure", "'rollback' or 'halt'", ""),
        (
            "    dependencies: [{kind: tcp, host: 127.0.0.1, port: 5432}]",
            "environments.dev.dependencies[0]",
            "a dependency needs an explicit 'name'",
            "",
        ),
        (
            "    dependencies: [{kind: tcp, name: db, host: h, port: 1}, {kind: tcp, name: db, host: h, port: 2}]",
            "environments.dev.dependencies",
            "dependency names must be unique",
            "",
        ),
        (
            "    dependencies: [{kind: tcp, name: db, host: h, port: 1, breaker: {windw: 5}}]",
            "environments.dev.dependencies[0].breaker.windw",
            "unknown key 'windw'",
            "did you mean 'window'?",
        ),
    ],
)
def test_environment_keys_are_checked_with_their_path(extra: str, key_path: str, reason: str, hint: str) -> None:
    err = error_of(config(8080, env_extra=extra))
    assert err.key_path == key_path and err.line is not None
    assert reason in str(err) and hint in err.hint


def test_load_test_stage_keys_are_checked() -> None:
    stage = "  - {name: load, kind: load-test, environment: dev, load_test: {urls: [http://x/], thresholds: {p95: 1}}}"
    err = error_of(config(8080, stages=stage))
    assert err.key_path == "pipeline[2].load_test.thresholds.p95" and "did you mean 'p95_ms'?" in err.hint
    err = error_of(config(8080, stages="  - {name: load, kind: load-test, environment: dev}"))
    assert "needs 'load_test'" in str(err)
    err = error_of(config(8080, stages="  - {name: t, kind: test, run: 'true', load_test: {urls: [http://x/]}}"))
    assert "only a load-test stage takes 'load_test'" in str(err)
    err = error_of(
        config(
            8080,
            stages="  - {name: load, kind: load-test, environment: dev, load_test: {urls: [http://x/], method: POST}}",
        )
    )
    assert "only sends" in str(err)


def test_templates_are_validated_once_rendered_and_point_at_their_line() -> None:
    # "{{ vars.host }}" passes the URL check when the file is read; once rendered it is not a URL.
    text = config(8080, checks="    - {kind: http, url: '{{ vars.host }}/health'}").replace(
        "vars: {port: 8080}", "vars: {port: 8080, host: not-a-url}"
    )
    err = error_of(text)
    assert (err.line, err.key_path) == (13, "deploy.checks[0]")
    assert "expected an http:// or https:// URL" in str(err)
    err = error_of(config(8080, checks="    - {kind: http, url: '{{ environment.ur }}/health'}"))
    assert err.key_path is not None and err.key_path.startswith("deploy.checks[0]") and "environment.ur" in str(err)


def test_rendered_checks_get_names_from_their_rendered_values() -> None:
    from slipway.services.checks import host_context, render_checks
    from slipway.services.releases import hosts_of

    text = config(
        8080,
        checks="    - {kind: http, url: '{{ environment.url }}/health'}\n    - {kind: command, run: 'echo {{ host.name }}'}",
    )
    loaded = parse_config(text, path=Path("/tmp/p/slipway.yml"))
    [host] = hosts_of(loaded, "dev")
    http, command = render_checks(
        loaded, loaded.project.deploy.checks, host_context(loaded, "dev", RELEASE, host), ("deploy", "checks")
    )
    assert http.name == "http GET http://127.0.0.1:8080/health"
    assert command.run == "echo dev-1" and command.name == "command echo dev-1"  # type: ignore[union-attr]
