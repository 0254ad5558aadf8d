"""pytest fixtures for the OpenSSH test bed (see docs/ssh.md).

Use them from a ``conftest.py``::

    from tests.support.pytest_ssh import ssh_testbed, ssh_testbed_session  # noqa: F401

then ask for a bed in a test: ``bed = ssh_testbed(3)`` starts three hosts that are stopped (every
process killed, iptables rules removed, disks unmounted) when the test ends, pass or fail.
Benchmarks and scripts without pytest use :class:`tests.support.sshbed.SSHTestBed` directly, and
:func:`target_for` to get an :class:`~slipway.targets.ssh.SSHTarget` for one of its hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from slipway.targets.pool import SSHPool
from slipway.targets.ssh import SSHTarget
from tests.support.sshbed import SSHHost, SSHTestBed
from tests.support.sshsystem import ensure_installed, remove_stale_rules

#: ``make(count=1, **options) -> SSHTestBed``: options are those of :class:`SSHTestBed`.
BedFactory = Callable[..., SSHTestBed]


def target_for(host: SSHHost, *, root: str = "/srv/app", **options: Any) -> SSHTarget:
    """An SSH target for a test bed host, checking its host key against the bed's known_hosts."""
    settings: dict[str, Any] = {
        "port": host.port, "username": host.username, "client_keys": [host.client_key],
        "known_hosts": host.known_hosts, **options,
    }
    return SSHTarget(host.name, host.address, root=root, **settings)


def pool_for(bed: SSHTestBed, *, root: str = "/srv/app", **options: Any) -> SSHPool:
    """An :class:`SSHPool` with a target per host of the bed; takes max_concurrency and max_connecting too."""
    caps = {k: options.pop(k) for k in ("max_concurrency", "max_connecting") if k in options}
    pool = SSHPool(**caps)
    for host in bed.hosts:
        settings: dict[str, Any] = {
            "port": host.port, "username": host.username, "client_keys": [host.client_key],
            "known_hosts": host.known_hosts, **options,
        }
        pool.add(host.name, host.address, root=root, **settings)
    return pool


def _factory(make_dir: Callable[[], Any]) -> tuple[BedFactory, list[SSHTestBed]]:
    beds: list[SSHTestBed] = []

    def make(count: int = 1, **options: Any) -> SSHTestBed:
        bed = SSHTestBed(make_dir(), count, **options)
        beds.append(bed)
        bed.start()
        return bed

    return make, beds


def _stop_all(beds: list[SSHTestBed]) -> None:
    errors = []
    for bed in reversed(beds):
        try:
            bed.stop()
        except Exception as exc:  # stop the others anyway, then report
            errors.append(str(exc))
    if errors:
        raise RuntimeError("\n".join(errors))


@pytest.fixture(scope="session")
def ssh_bed_installed() -> None:
    """openssh-server and iptables are installed; rules left by crashed earlier runs are gone."""
    ensure_installed()
    remove_stale_rules()


@pytest.fixture
def ssh_testbed(
    tmp_path_factory: pytest.TempPathFactory, ssh_bed_installed: None
) -> Iterator[BedFactory]:
    """A factory of test beds that live as long as the test: ``bed = ssh_testbed(count, **options)``."""
    make, beds = _factory(lambda: tmp_path_factory.mktemp("sshbed"))
    try:
        yield make
    finally:
        _stop_all(beds)


@pytest.fixture(scope="session")
def ssh_testbed_session(
    tmp_path_factory: pytest.TempPathFactory, ssh_bed_installed: None
) -> Iterator[BedFactory]:
    """Like ``ssh_testbed`` but the beds live for the whole session: share them, inject no faults."""
    make, beds = _factory(lambda: tmp_path_factory.mktemp("sshbed-session"))
    try:
        yield make
    finally:
        _stop_all(beds)
