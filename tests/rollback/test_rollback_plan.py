"""A rollback follows the environment's strategy batch by batch (the planner, pure).

The reported case: 2 hosts behind nginx with ``rolling, batch_size: 1``; the planner batched the rollback by
``parallel`` (both hosts at once), so both were drained together and nginx refused an empty group.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.engine.planner import HostInfo, ReleaseInfo, describe_plan, plan_deployment, plan_rollout
from slipway.engine.strategy import BatchKind
from slipway.model.config import Environment

pytestmark = pytest.mark.timeout(30)

BASE = """\
name: app
artifact:
  paths: [app]
deploy:
  hooks:
    activate: "sh restart.sh"
environments:
  prod:
    parallel: 10
    targets:
      - {kind: local, name: web-1, path: t/1}
      - {kind: local, name: web-2, path: t/2}
      - {kind: local, name: web-3, path: t/3}
      - {kind: local, name: web-4, path: t/4}
      - {kind: local, name: web-5, path: t/5}
STRATEGY
pipeline:
  - {name: build, kind: build}
  - {name: deploy-prod, kind: deploy, environment: prod}
"""
HOSTS = ["web-1", "web-2", "web-3", "web-4", "web-5"]


def env_with(strategy: str) -> Environment:
    text = BASE.replace("STRATEGY", f"    strategy: {strategy}" if strategy else "")
    return parse_config(text, path=Path("/p/slipway.yml")).project.environments["prod"]


def test_rolling_batch_size_one_rolls_back_one_host_at_a_time() -> None:
    batches = plan_rollout(HOSTS[:2], env_with("{kind: rolling, batch_size: 1}"), rollback=True)
    assert [b.hosts for b in batches] == [("web-1",), ("web-2",)]


def test_rolling_rollback_keeps_the_batch_size_and_cap_but_not_the_pause() -> None:
    env = env_with("{kind: rolling, batch_size: 60%, max_unavailable: 2, pause: 30}")
    batches = plan_rollout(HOSTS, env, rollback=True)
    assert [b.hosts for b in batches] == [("web-1", "web-2"), ("web-3", "web-4"), ("web-5",)]
    assert all(b.pause_after == 0 and b.kind is BatchKind.BATCH for b in batches)


def test_canary_rollback_has_no_canary_bake_or_approval_pause() -> None:
    env = env_with("{kind: canary, canary_hosts: 1, bake_time: 600, check_interval: 10, on_success: pause, "
                   "batch_size: 2, pause: 5}")
    deploy = plan_rollout(HOSTS, env)
    assert deploy[0].kind is BatchKind.CANARY and deploy[0].wait_for_approval
    batches = plan_rollout(HOSTS, env, rollback=True)
    assert [b.hosts for b in batches] == [("web-1", "web-2"), ("web-3", "web-4"), ("web-5",)]
    assert not any(b.bake_time or b.wait_for_approval or b.pause_after for b in batches)
    assert {b.kind for b in batches} == {BatchKind.BATCH}


@pytest.mark.parametrize("strategy", ["", "{kind: all_at_once}"])
def test_without_a_batching_strategy_a_rollback_goes_parallel_at_a_time(strategy: str) -> None:
    batches = plan_rollout(HOSTS, env_with(strategy), rollback=True)
    assert [b.hosts for b in batches] == [tuple(HOSTS)]


def test_the_rollback_plan_and_its_dry_run_show_the_strategys_batches() -> None:
    project = parse_config(
        BASE.replace("STRATEGY", "    strategy: {kind: rolling, batch_size: 2, pause: 9}"), path=Path("/p/slipway.yml")
    ).project
    plan = plan_deployment(
        project=project,
        environment="prod",
        hosts=[HostInfo(h, f"/srv/{h}") for h in HOSTS],
        release=ReleaseInfo("r1", "sha256:" + "0" * 64, "c" * 40),
        render=lambda text, ctx, where: text,
        rollback=True,
    )
    assert plan.batches == (("web-1", "web-2"), ("web-3", "web-4"), ("web-5",))
    assert plan.strategy == "rolling"
    text = "\n".join(describe_plan(plan))
    assert "batch 1 of 3: web-1, web-2" in text and "pause" not in text.split("strategy:")[1].split("\n", 1)[1]
