"""The test bed itself: many hosts fast, each its own /srv, and nothing left behind after stop."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from ssh_support import arun
from tests.support.pytest_ssh import BedFactory, target_for
from tests.support.sshbed import SSHTestBed
from tests.support.sshsystem import SSHBedError

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(120)]


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def _iptables_rules() -> str:
    return subprocess.run(["iptables", "-w", "10", "-S", "INPUT"], capture_output=True, text=True,
                          timeout=30, check=True).stdout


def test_fifty_hosts_start_fast_and_stop_without_a_trace(ssh_testbed: BedFactory) -> None:
    started = time.monotonic()
    bed = ssh_testbed(50)
    assert time.monotonic() - started < 15
    hosts = bed.hosts
    assert len({h.address for h in hosts}) == 50
    assert all(h.address.startswith("127.") and h.address != "127.0.0.1" for h in hosts)
    known = bed.known_hosts.read_text().splitlines()
    assert len(known) == 50 and all(line.split()[1] == "ssh-ed25519" for line in known)
    pids = [pid for h in hosts for pid in bed.pids(h)]
    bed.block(hosts[7])

    bed.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not any(os.path.ismount(h.host_dir) for h in hosts)
    assert not any(_accepts(h.address, h.port) for h in hosts[:5])
    assert hosts[7].address not in _iptables_rules()
    bed.stop()  # idempotent


def test_each_host_sees_its_own_srv(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(2)
    one, two = bed.hosts

    async def main() -> tuple[str, str]:
        async with target_for(one) as first, target_for(two) as second:
            await first.run("echo one > /srv/who")
            return (await first.run("ls /srv")).stdout, (await second.run("ls /srv")).stdout

    assert arun(main()) == ("who\n", "")
    assert (one.host_dir / "who").read_text() == "one\n"
    assert not (two.host_dir / "who").exists()


def test_two_beds_at_once_do_not_collide(ssh_testbed: BedFactory) -> None:
    first, second = ssh_testbed(3), ssh_testbed(3)
    assert not {h.address for h in first.hosts} & {h.address for h in second.hosts}

    async def main() -> list[str]:
        outputs = []
        for host in [*first.hosts, *second.hosts]:
            async with target_for(host) as target:
                outputs.append((await target.run("echo ok")).stdout)
        return outputs

    assert arun(main()) == ["ok\n"] * 6


def test_a_taken_address_block_is_refused(ssh_testbed: BedFactory, tmp_path: Path) -> None:
    bed = ssh_testbed(2)
    clash = SSHTestBed(tmp_path, 1, base_address=bed.hosts[1].address)
    with pytest.raises(SSHBedError, match="in use by another test bed"):
        clash.start()


def test_a_failing_start_cleans_up(tmp_path: Path, ssh_bed_installed: None) -> None:
    bed = SSHTestBed(tmp_path, 2, sshd_options={"NoSuchOption": "yes"}, start_timeout=10)
    with pytest.raises(SSHBedError, match="sshd exited"):
        bed.start()
    assert bed.hosts == []
    assert not any(os.path.ismount(p) for p in (tmp_path / "hosts").glob("*/srv"))


def test_fill_disk_needs_a_tmpfs_disk(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1, disk_size=None)
    with pytest.raises(SSHBedError, match="no tmpfs disk"):
        bed.fill_disk(bed.hosts[0])
