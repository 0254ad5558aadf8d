"""Host keys are always checked: unknown and changed keys are refused, accept-new records first contact."""

from __future__ import annotations

from pathlib import Path

import pytest
from ssh_support import arun
from tests.support.pytest_ssh import BedFactory, target_for
from tests.support.sshbed import SSHTestBed
from tests.support.sshsystem import generate_key

from slipway.errors import HostKeyError

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(60)]


def _public_key(bed_host_key: Path) -> str:
    return " ".join(bed_host_key.with_name(bed_host_key.name + ".pub").read_text().split()[:2])


def test_an_unknown_host_key_is_refused_with_its_fingerprint(shared_bed: SSHTestBed, tmp_path: Path) -> None:
    host = shared_bed.hosts[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    async def main() -> None:
        async with target_for(host, known_hosts=empty, connect_timeout=5) as target:
            with pytest.raises(HostKeyError, match=r"is unknown: not in .*\(it presented SHA256:") as info:
                await target.run("true")
            assert info.value.host == host.name and "accept_new_host_keys" in info.value.hint

    arun(main())
    assert empty.read_text() == "", "a refused key must not be recorded"


def test_a_missing_known_hosts_file_is_refused(shared_bed: SSHTestBed, tmp_path: Path) -> None:
    async def main() -> None:
        async with target_for(shared_bed.hosts[0], known_hosts=tmp_path / "absent") as target:
            with pytest.raises(HostKeyError, match="does not exist"):
                await target.run("true")

    arun(main())


def test_a_changed_host_key_is_refused_even_with_accept_new(ssh_testbed: BedFactory) -> None:
    bed = ssh_testbed(1)
    host = bed.hosts[0]
    bed.rotate_host_key(host)  # the host now presents a key that known_hosts does not list

    async def main() -> None:
        for accept_new in (False, True):
            async with target_for(host, accept_new_host_keys=accept_new, connect_timeout=5) as target:
                with pytest.raises(HostKeyError, match="does not match") as info:
                    await target.run("true")
                assert "intercepting" in info.value.hint

    before = host.known_hosts.read_text()
    arun(main())
    assert host.known_hosts.read_text() == before
    assert bed.accepted_logins(host) == 0


def test_a_wrong_key_in_known_hosts_is_refused(shared_bed: SSHTestBed, tmp_path: Path) -> None:
    host = shared_bed.hosts[1]
    impostor = generate_key(tmp_path / "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(f"{host.known_hosts_pattern} {' '.join(impostor.split()[:2])}\n")

    async def main() -> None:
        target = target_for(host, known_hosts=known, accept_new_host_keys=True, connect_timeout=5)
        async with target:
            with pytest.raises(HostKeyError, match="does not match"):
                await target.run("true")

    arun(main())


def test_accept_new_records_the_key_and_later_connections_verify_it(
    shared_bed: SSHTestBed, tmp_path: Path
) -> None:
    host = shared_bed.hosts[2]
    known = tmp_path / "known_hosts"
    known.write_text("")

    async def main() -> None:
        async with target_for(host, known_hosts=known, accept_new_host_keys=True) as target:
            assert (await target.run("echo first")).stdout == "first\n"
        async with target_for(host, known_hosts=known) as strict:
            assert (await strict.run("echo second")).stdout == "second\n"

    arun(main())
    assert known.read_text() == f"{host.known_hosts_pattern} {_public_key(host.host_key)}\n"
