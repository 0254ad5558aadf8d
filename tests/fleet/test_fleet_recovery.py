"""SIGTERM during a deployment to real OpenSSH hosts: every switched host goes back, exit 143."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.recovery_support import Recovering
from tests.fleet.conftest import ssh_target
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(300)


def test_sigterm_during_activate_on_ssh_hosts_reverts_both_records_cancelled_and_unlocks(
    tmp_path: Path, ssh_testbed: Callable[..., SSHTestBed]
) -> None:
    bed = ssh_testbed(2)
    names = [h.name for h in bed.hosts]
    proj = Recovering(tmp_path / "proj", targets=[ssh_target(bed, i, name) for i, name in enumerate(names)])

    def current(index: int) -> str | None:
        link = bed.hosts[index].host_dir / "app/current"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    proj.ok("run")
    old = current(0)
    assert old and current(1) == old
    proj.new_version("v2")
    proj.hold(names[1], 2)  # the first host runs v2; the second switched and activates
    proc = proj.start("run")
    proj.wait_reached(names[1], 2, proc)
    assert current(0) != old and current(1) != old
    proc.send_signal(signal.SIGTERM)
    exit_code, output = proj.finish(proc)
    proj.let_go(names[1], 2)
    assert exit_code == 143, output
    assert [current(0), current(1)] == [old, old]
    run = proj.history()[0]
    assert run["state"] == "cancelled"
    assert proj.status_hosts() == {names[0]: old, names[1]: old}
    store = proj.store()
    try:
        assert store.locks() == []
    finally:
        store.close()
