"""The xdist groups tests/conftest.py assigns hold: every test of a group runs on one worker.

pytest 9.2 with pytest-xdist 3.8 silently ignored them (pytest-xdist issue 1386): container tests then ran
on both workers, and each worker's podman service removed the other's containers. pyproject pins pytest
below 9.2; this test fails if an upgrade (or a change to the conftest hook) splits a group again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(180)


def test_a_grouped_tier_runs_on_one_worker() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-v",
         "tests/containers/test_containers_config.py", "tests/core/test_access.py"],
        cwd=REPO,
        env={**os.environ, "PYTEST_ADDOPTS": ""},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    ran = re.findall(r"^\[(gw\d)\] .*? PASSED (tests/.*?)\s*$", proc.stdout, re.M)
    podman = [(worker, test) for worker, test in ran if test.startswith("tests/containers/")]
    assert len(podman) >= 10 and all(test.endswith("@podman") for _, test in podman), podman
    assert len({worker for worker, _ in podman}) == 1, podman
