"""slipway.yml: strategy, circuit_breaker, router and readiness per environment, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.engine.planner import HostInfo, ReleaseInfo, plan_deployment
from slipway.engine.strategy import BatchKind, Rolling
from slipway.errors import ConfigError
from slipway.model.config import Project

BASE = """\
name: app
artifact:
  paths: [app]
deploy:
  hooks:
    activate: "sh restart.sh {{ vars.port }}"
environments:
  prod:
    vars: {port: 8080}
    targets:
      - {kind: local, name: h1, path: t/1}
      - {kind: local, name: h2, path: t/2}
      - {kind: local, name: h3, path: t/3}
      - {kind: local, name: h4, path: t/4}
      - {kind: local, name: h5, path: t/5}
EXTRA
pipeline:
  - {name: build, kind: build}
  - {name: deploy-prod, kind: deploy, environment: prod}
"""

TRAFFIC = """\
    strategy: {kind: rolling, batch_size: 40%, max_unavailable: 2, pause: 5}
    circuit_breaker: {threshold: 0.5, min_threshold: 1, auto_rollback: false}
    router: {kind: nginx, group: web, port: "{{ vars.port }}", conf_dir: /etc/nginx/slipway}
    readiness: {path: /health, successes: 2, timeout: 1}"""


def project(extra: str) -> Project:
    return parse_config(BASE.replace("EXTRA", extra), path=Path("/p/slipway.yml")).project


def error_of(extra: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        project(extra)
    return err.value


def test_strategy_breaker_router_and_readiness_parse() -> None:
    env = project(TRAFFIC).environments["prod"]
    assert isinstance(env.strategy, Rolling) and env.strategy.batch_size == "40%"
    assert env.circuit_breaker is not None and env.circuit_breaker.auto_rollback is False
    assert env.router is not None and env.router.group == "web" and env.router.port == "{{ vars.port }}"
    assert env.readiness is not None and env.readiness.successes == 2


def test_without_a_strategy_batches_are_parallel_at_a_time() -> None:
    plan = _plan(project("    parallel: 2"))
    assert plan.batches == (("h1", "h2"), ("h3", "h4"), ("h5",)) and plan.strategy == "all_at_once"
    assert {b.kind for b in plan.rollout} == {BatchKind.ALL}


def test_the_planner_takes_batches_from_the_strategy() -> None:
    plan = _plan(project(TRAFFIC))
    # 40% of 5 rounds up to 2, max_unavailable 2: 2, 2, 1; the pause after every batch but the last
    assert plan.batches == (("h1", "h2"), ("h3", "h4"), ("h5",)) and plan.strategy == "rolling"
    assert [b.pause_after for b in plan.rollout] == [5, 5, 0]


def test_a_canary_plan_carries_its_bake_time() -> None:
    plan = _plan(
        project("    strategy: {kind: canary, canary_hosts: 1, bake_time: 60, check_interval: 20, batch_size: 2}")
    )
    assert plan.batches == (("h1",), ("h2", "h3"), ("h4", "h5"))
    assert plan.rollout[0].kind is BatchKind.CANARY and plan.rollout[0].bake_time == 60


def test_a_misspelt_strategy_key_points_at_it_and_suggests() -> None:
    err = error_of("    strategy: {kind: rolling, batch_sise: 2}")
    assert err.file == "/p/slipway.yml" and err.line == 16 and err.column is not None
    assert "batch_sise" in (err.key_path or "")
    assert "batch_size" in err.hint


def test_a_misspelt_breaker_key_suggests_the_right_one() -> None:
    err = error_of("    circuit_breaker: {treshold: 0.5}")
    assert err.line == 16 and "treshold" in (err.key_path or "") and "threshold" in err.hint


def test_a_misspelt_environment_key_suggests_strategy() -> None:
    err = error_of("    stratgy: {kind: rolling}")
    assert err.line == 16 and "did you mean 'strategy'" in err.hint


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("    strategy: {kind: rolling, batch_size: 0}", "at least 1"),
        ("    strategy: {kind: rolling, batch_size: 150%}", "100%"),
        ("    strategy: {kind: sideways}", "sideways"),
        ("    circuit_breaker: {threshold: 1.5}", "at most 1"),
        ("    router: {kind: nginx, group: 'bad name'}", "group"),
        ("    readiness: {path: health}", "readiness"),
        ("    router: {kind: haproxy}", "nginx"),
    ],
)
def test_bad_values_are_refused_with_their_position(extra: str, words: str) -> None:
    err = error_of(extra)
    assert err.line == 16, err
    assert words in str(err) + err.hint + (err.key_path or ""), err


def _plan(proj: Project):  # type: ignore[no-untyped-def]
    hosts = [HostInfo(f"h{i}", f"/t/{i}") for i in range(1, 6)]
    return plan_deployment(
        project=proj,
        environment="prod",
        hosts=hosts,
        release=ReleaseInfo("r1", "sha256:" + "0" * 64, "c" * 40),
        render=lambda text, ctx, where: text,
    )
