"""Faults during fleet deployments: each is reported for its host with evidence, no host ever points at an
incomplete release, and running the same deployment again completes it, sending nothing already there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import GIT_ENV, SLIPWAY
from tests.fleet.conftest import ssh_target
from tests.support.sshbed import SSHTestBed

pytestmark = pytest.mark.timeout(300)


class Fleet:
    """A small project deployed with the real CLI to every host of a test bed."""

    def __init__(self, root: Path, bed: SSHTestBed, *, payload_mb: int = 1) -> None:
        self.root, self.bed = root, bed
        self.env = {**os.environ, **GIT_ENV, "SLIPWAY_USER": "tester"}
        (root / "app").mkdir(parents=True)
        for i in range(40):
            (root / "app" / f"f{i:02}.bin").write_bytes(os.urandom(payload_mb * 25_000))
        self.config: dict[str, Any] = {
            "name": "fleetfaults",
            "artifact": {"paths": ["app"]},
            "deploy": {"hooks": {"configure": [], "activate": ["echo started {{ release.id }}"]}},
            "environments": {"fleet": {"targets": [ssh_target(bed, i, h.name) for i, h in enumerate(bed.hosts)]}},
            "pipeline": [{"name": "build", "kind": "build"}, {"name": "deploy", "kind": "deploy", "environment": "fleet"}],
        }
        self.write()
        self.git("init", "-q")
        self.commit("first")

    def write(self) -> None:
        (self.root / "slipway.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, env=self.env, check=True, capture_output=True)

    def commit(self, message: str) -> None:
        self.write()
        self.git("add", "-A")
        self.git("commit", "-qm", message)

    def slipway(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SLIPWAY, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=240, check=False)

    def current(self, index: int) -> str | None:
        link = self.bed.hosts[index].host_dir / "app/current"
        return os.readlink(link) if link.is_symlink() else None

    def releases(self, index: int) -> list[str]:
        path = self.bed.hosts[index].host_dir / "app/releases"
        return sorted(p.name for p in path.iterdir()) if path.exists() else []

    def sent(self, run_id: str) -> list[int]:
        logs = self.slipway("logs", run_id).stdout
        return [int(b) for b in re.findall(r"\((\d+) bytes\)", logs)]


@pytest.fixture
def fleet(tmp_path: Path, ssh_testbed: Callable[..., SSHTestBed]) -> Callable[..., Fleet]:
    def make(count: int = 3, *, payload_mb: int = 1, **bed_options: Any) -> Fleet:
        return Fleet(tmp_path / "proj", ssh_testbed(count, **bed_options), payload_mb=payload_mb)

    return make


def assert_no_partial_release(f: Fleet) -> None:
    for i in range(len(f.bed.hosts)):
        assert not [r for r in f.releases(i) if r.endswith(".partial")]
        current = f.current(i)
        if current:
            assert (f.bed.hosts[i].host_dir / "app" / current / ".slipway-release").is_file()


def test_an_unreachable_host_stops_the_deployment_before_any_switch(fleet: Callable[..., Fleet]) -> None:
    f = fleet(3)
    f.bed.kill(1)
    out = f.slipway("run")
    # A host that cannot be reached before anything changed is "host unreachable" (exit 5, docs/cli.md),
    # not a failed deployment (6): it was wrapped in a DeploymentError and exited 6.
    assert out.returncode == 5, out.stderr
    assert "host2" in out.stderr
    text = " ".join(out.stderr.split())
    assert "deployment of fleet could not reach 1 of 3 hosts; nothing was changed on any host" in text
    assert "docs/ssh.md" in text
    [run] = json.loads(f.slipway("history", "--limit", "1", "--json").stdout)
    assert run["state"] == "failed"
    assert [f.current(i) for i in range(3)] == [None, None, None]
    f.bed.restart(1)
    again = f.slipway("run")
    assert again.returncode == 0, again.stderr
    assert len({f.current(i) for i in range(3)}) == 1
    assert_no_partial_release(f)


def test_refused_authentication_and_unknown_host_key_are_reported_per_host(fleet: Callable[..., Fleet]) -> None:
    f = fleet(2)
    wrong = f.root / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    f.config["environments"]["fleet"]["targets"][0]["key"] = str(wrong)
    f.commit("a wrong key for host1")
    out = f.slipway("run")
    assert out.returncode == 5 and "host1" in out.stderr
    assert "authentication" in out.stderr.lower() or "refused" in out.stderr.lower(), out.stderr

    empty = f.root / "known_hosts_empty"
    empty.write_text("")
    f.config["environments"]["fleet"]["targets"][0]["key"] = str(f.bed.hosts[0].client_key)
    f.config["environments"]["fleet"]["targets"][1]["known_hosts"] = str(empty)
    f.commit("host2's key is not known")
    out = f.slipway("run")
    assert out.returncode == 5 and "host2" in out.stderr
    assert "SHA256:" in out.stderr  # the fingerprint the host presented, to check out of band
    assert [f.current(i) for i in range(2)] == [None, None]

    f.config["environments"]["fleet"]["targets"][1]["accept_new_host_keys"] = True
    f.commit("accept host2's key explicitly")
    assert f.slipway("run").returncode == 0
    assert f.bed.hosts[1].address in empty.read_text()


def test_a_verify_failure_on_one_of_three_hosts_counts_the_environment_not_the_batch(
    fleet: Callable[..., Fleet],
) -> None:
    # Rolling one host at a time, host2's verify fails: the message said "1 of 1 host(s)" (its batch).
    f = fleet(3)
    f.config["environments"]["fleet"]["strategy"] = {"kind": "rolling", "batch_size": 1}
    f.config["deploy"]["hooks"]["verify"] = ['test "$SLIPWAY_HOST" != host2']
    f.commit("host2 fails its verify hook")
    out = f.slipway("run")
    assert out.returncode == 6, out.stderr
    text = " ".join(out.stderr.split())
    assert "deployment of fleet failed after the switch on 1 of 3 hosts" in text, text
    assert "host(s)" not in out.stderr and "1 of 1" not in out.stderr


def test_a_hook_that_times_out_is_stopped_and_nothing_switches(fleet: Callable[..., Fleet]) -> None:
    f = fleet(2)
    f.config["environments"]["fleet"]["targets"][1]["roles"] = ["slow"]
    f.config["deploy"]["hooks"]["configure"] = [{"run": "sleep 30", "roles": ["slow"], "timeout": 1}]
    f.commit("a configure hook that hangs on host2")
    started = time.monotonic()
    out = f.slipway("run")
    assert time.monotonic() - started < 60
    assert out.returncode == 6 and "host2" in out.stderr and "timed out" in out.stderr
    assert [f.current(i) for i in range(2)] == [None, None]
    assert_no_partial_release(f)


def test_a_full_disk_fails_that_host_cleanly_and_a_rerun_completes(fleet: Callable[..., Fleet]) -> None:
    f = fleet(2)
    assert f.slipway("run").returncode == 0
    first = f.current(1)
    (f.root / "app/big.bin").write_bytes(os.urandom(3_000_000))
    f.commit("a release that does not fit on host2")
    f.bed.fill_disk(1, free=200_000)
    out = f.slipway("run")
    assert out.returncode == 6, out.stderr
    assert "host2" in out.stderr and "the disk is full" in out.stderr
    assert f.current(0) == f.current(1) == first  # nobody switched
    assert_no_partial_release(f)
    f.bed.restore_disk(1)
    again = f.slipway("run")
    assert again.returncode == 0, again.stderr
    sent = f.sent(str(3))
    assert len(sent) == 2 and min(sent) < 100_000 < max(sent)  # host1 already had everything but nothing on host2
    assert f.current(0) == f.current(1) != first


def test_a_connection_lost_mid_transfer_leaves_no_partial_release_and_a_rerun_completes(
    fleet: Callable[..., Fleet],
) -> None:
    f = fleet(2, payload_mb=2)  # about 2 MB per host
    assert f.slipway("run").returncode == 0
    first = f.current(1)
    for i in range(40):
        (f.root / "app" / f"f{i:02}.bin").write_bytes(os.urandom(1_000_000))
    f.commit("a 40 MB release")
    incoming = f.bed.hosts[1].host_dir / "app/.slipway/tmp"
    killed = threading.Event()

    def kill_when_uploading() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed.is_set():
            if incoming.exists() and any(p.name.endswith(".objects") for p in incoming.iterdir()):
                f.bed.kill(1)
                killed.set()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_when_uploading)
    watcher.start()
    out = f.slipway("run")
    watcher.join()
    assert killed.is_set(), "the upload finished before the host could be killed"
    assert out.returncode in (5, 6) and "host2" in out.stderr, out.stderr
    assert f.current(0) == f.current(1) == first
    assert_no_partial_release(f)
    f.bed.restart(1)
    again = f.slipway("run")
    assert again.returncode == 0, again.stderr
    assert f.current(0) == f.current(1) != first
    assert_no_partial_release(f)
