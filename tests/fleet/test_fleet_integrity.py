"""A tampered manifest is refused before an SSH host is touched (issue 11, item 2)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Project
from tests.e2e.test_integrity import TAMPERINGS, host_state, promote_is_refused, tamper_manifest
from tests.fleet.conftest import host_path, use_fleet
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(300)


@TAMPERINGS
def test_a_tampered_manifest_is_refused_on_an_ssh_host(
    project: Project, ssh_testbed: Callable[..., SSHTestBed], tamper: Callable[[dict[str, Any]], None]
) -> None:
    bed = ssh_testbed(1)
    try:
        use_fleet(project, bed, {"staging": [0]})
        # The app on the host has no migrated database (the fleet tests give it PostgreSQL): acceptance on
        # staging fails, after the deployment this test needs; promotion only needs the stages before it.
        project.slipway("run", check=False)
        digest = project.status()["staging"]["artifact_digest"]
        assert digest, project.status()
        root = host_path(bed, 0, "app")
        before = host_state(root)
        tamper_manifest(project, tamper)
        promote_is_refused(project, digest)
        assert host_state(root) == before  # current and the releases on the host are as they were
        assert not (root / "current/app/config").is_symlink() and not (root / "current/app/up").is_symlink()
    finally:
        pidfile = host_path(bed, 0, "app/shared/run/app.pid")
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), 15)
