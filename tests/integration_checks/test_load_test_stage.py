"""The load-test stage against the deployed example app: figures stored and shown, thresholds enforced."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Project
from tests.integration_checks.conftest import config

pytestmark = pytest.mark.timeout(180)

STAGES = """\
  - name: load-health
    kind: load-test
    environment: dev
    load_test:
      urls: ["{{ environment.url }}/health"]
      requests: 80
      concurrency: 4
      time_limit: 30
      thresholds: {p50_ms: 2000, p95_ms: 5000, max_error_rate: 0}
  - name: load-missing
    kind: load-test
    environment: dev
    load_test:
      urls: ["{{ environment.url }}/no-such-page"]
      requests: 20
      concurrency: 2
      thresholds: {max_error_rate: 0.01}
"""


def test_a_load_test_passes_its_thresholds_and_the_next_breaks_one(project: Project) -> None:
    (project.root / "slipway.yml").write_text(config(project.ports["dev"], stages=STAGES))
    project.commit("load tests after the deployment")
    failed = project.slipway("run", check=False)
    assert failed.returncode == 8, failed.stderr  # a threshold broke: a check failed
    assert "load test of dev broke 1 threshold(s)" in failed.stderr
    assert "load-missing" in failed.stderr and "errors 100.0%" in failed.stderr
    [run] = project.json("history", "--limit", "1")
    states = {s["name"]: s["state"] for s in run["stages"]}
    assert states == {
        "build": "succeeded",
        "deploy-dev": "succeeded",
        "load-health": "succeeded",
        "load-missing": "failed",
    }

    passed = project.slipway("logs", str(run["id"]), "--stage", "load-health").stdout
    assert "load-test: 80 x GET at concurrency 4" in passed
    assert "requests: 80 of 80 completed" in passed and "errors: 0 (0.0%)" in passed
    assert "latency: p50 " in passed and "thresholds: p50 <= 2000 ms, p95 <= 5000 ms, error rate <= 0.0%" in passed
    assert "verdict: every threshold held" in passed

    broke = project.slipway("logs", str(run["id"]), "--stage", "load-missing").stdout
    assert "requests: 20 of 20 completed" in broke and "errors: 20 (100.0%)" in broke
    assert "BROKEN: " in broke
