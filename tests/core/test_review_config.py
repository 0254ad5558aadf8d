"""The ``review:`` template: what it becomes for one merge request, and every mistake named with its key,
at load or by ``slipway validate`` (which fills it in for an example request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config import LoadedConfig, parse_config
from slipway.errors import ConfigError
from slipway.model.states import StageKind
from slipway.services.review import merge_request_stages
from slipway.services.review_env import review_environment, with_review
from slipway.services.validate import validate_project

pytestmark = pytest.mark.timeout(60)

BASE = """\
name: app
artifact: {paths: [app]}
deploy:
  hooks:
    activate: "sh run.sh {{ vars.port }} {{ paths.shared }}"
environments:
  dev:
    url: "http://127.0.0.1:{{ vars.port }}"
    vars: {port: 8080}
    targets: [{kind: local, name: d1, path: t/dev}]
  production:
    vars: {port: 8081}
    targets: [{kind: local, name: p1, path: t/production}]
pipeline:
  - {name: build, kind: build}
  - {name: unit, kind: test, run: pytest}
  - {name: deploy-dev, kind: deploy, environment: dev}
  - {name: lint, kind: test, run: ruff}
  - {name: approve, kind: approval}
  - {name: deploy-production, kind: deploy, environment: production}
"""

REVIEW = """\
review:
  vars: {port: "{{ 19000 + review.number }}", branch: "{{ review.branch }}"}
  url: "http://127.0.0.1:{{ vars.port }}"
  targets: [{kind: local, name: web, path: "t/review-{{ review.number }}"}]
  smoke:
    - {name: home, kind: http, url: "{{ environment.url }}/health"}
  ttl: 72h
  teardown: "sh bin/stop.sh {{ paths.shared }}"
"""


def load(review: str = REVIEW, base: str = BASE) -> LoadedConfig:
    return parse_config(base + review, path=Path("/p/slipway.yml"))


def validate_error(review: str, base: str = BASE) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        validate_project(load(review, base))
    return err.value


def test_the_template_becomes_one_environment_per_request() -> None:
    loaded = load()
    env = review_environment(loaded.project, 7, branch="feature/x")
    assert env.vars == {"port": "19007", "branch": "feature/x"}
    assert env.url == "http://127.0.0.1:{{ vars.port }}"  # no review in it: rendered later, as every URL
    assert [t.path for t in env.targets] == ["t/review-7"]  # type: ignore[union-attr]
    assert env.smoke[0].url == "{{ environment.url }}/health"  # type: ignore[attr-defined]
    assert loaded.project.review is not None and loaded.project.review.ttl_delta is not None
    assert loaded.project.review.ttl_delta.total_seconds() == 72 * 3600
    extended = with_review(loaded, 7)
    assert set(extended.project.environments) == {"dev", "production", "review-7"}
    assert set(loaded.project.environments) == {"dev", "production"}  # the run's own copy only
    assert validate_project(loaded).startswith("2 environment(s), 6 stage(s)")  # the template is no environment


def test_a_merge_request_run_builds_tests_and_deploys_only_its_review_environment() -> None:
    stages = merge_request_stages(load().project, 7)
    assert stages == [
        ("build", StageKind.BUILD, None),
        ("unit", StageKind.TEST, None),
        ("lint", StageKind.TEST, None),
        ("deploy-review-7", StageKind.DEPLOY, "review-7"),
    ]  # no deploy to dev or production, no approval
    assert merge_request_stages(load(review="").project, 7) == stages[:3]  # no template: build and test only


def test_an_unknown_key_in_review_is_named_with_its_line() -> None:
    with pytest.raises(ConfigError) as err:
        load(REVIEW.replace("  targets:", "  target:"))
    assert err.value.key_path == "review.target" and (err.value.line, err.value.column) == (24, 3)
    assert "did you mean 'targets'" in err.value.hint


def test_a_bad_ttl_and_a_review_shaped_environment_name_are_refused_at_load() -> None:
    with pytest.raises(ConfigError) as err:
        load(REVIEW.replace("ttl: 72h", "ttl: 3 days"))
    assert err.value.key_path == "review.ttl" and "like 62h" in err.value.reason
    with pytest.raises(ConfigError) as err:
        load(base=BASE.replace("  production:", "  review-3:").replace("environment: production", "environment: review-3"))
    assert "name of a review environment" in err.value.reason


def test_validate_names_an_undefined_template_variable_with_its_key() -> None:
    err = validate_error(REVIEW.replace("review.number }}\"}]", "review.numbr }}\"}]"))
    assert err.key_path == "review.targets[0].path" and "numbr" in err.reason


def test_validate_refuses_a_deploy_root_shared_by_every_request() -> None:
    err = validate_error(REVIEW.replace("t/review-{{ review.number }}", "t/review"))
    assert err.key_path == "review.targets[0].path" and "same for every merge request" in err.reason


def test_validate_refuses_a_deploy_root_inside_another_environment() -> None:
    err = validate_error(REVIEW.replace("t/review-{{ review.number }}", "t/dev/{{ review.name }}"))
    assert "overlaps environment dev" in err.reason


def test_validate_refuses_a_template_that_is_not_an_environment() -> None:
    err = validate_error(REVIEW.replace("parallel", "").replace("ttl: 72h", "ttl: 72h\n  parallel: \"{{ review.number - 5 }}\""))
    assert err.key_path == "review.parallel" and "greater than or equal to 1" in err.reason


def test_validate_renders_the_teardown_commands() -> None:
    err = validate_error(REVIEW.replace("{{ paths.shared }}", "{{ paths.shard }}"))
    assert err.key_path == "review.teardown[0]" and "shard" in err.reason


def test_validate_renders_the_deploy_hooks_for_an_example_request() -> None:
    err = validate_error(REVIEW.replace('port: "{{ 19000 + review.number }}", ', "").replace("  url: ", "  # url: "))
    assert err.reason.startswith("environment review-1:") and "port" in err.reason
