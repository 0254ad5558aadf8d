"""The targets the contract suite runs against: one fresh target (and deploy root) per test and kind."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from slipway.ports import Target
from slipway.targets.local import LocalTarget
from slipway.testing import FakeTarget
from tests.support import pytest_ssh
from tests.support.pytest_ssh import BedFactory, target_for
from tests.support.sshbed import SSHHost

# The test bed fixtures, found by pytest under these names (non-root conftests cannot use pytest_plugins).
ssh_bed_installed = pytest_ssh.ssh_bed_installed
ssh_testbed_session = pytest_ssh.ssh_testbed_session

#: Every implementation of slipway.ports.Target. The container target (targets/container.py) is not one:
#: it starts, verifies and retires containers through the engine API and runs no commands (docs/testing.md).
KINDS = ["local", "fake", "ssh"]


@dataclass
class Subject:
    """A target under test: ``make()`` gives a new target whose deploy root does not exist yet."""

    kind: str
    make: Callable[[], Target]


@pytest.fixture(params=KINDS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    """One Target implementation, with a deploy root of its own for this test."""
    kind = request.param
    if kind == "local":
        return Subject(kind, lambda: LocalTarget("contract-host", tmp_path / "root"))
    if kind == "fake":
        return Subject(kind, lambda: FakeTarget("contract-host", tmp_path / "root"))
    host: SSHHost = request.getfixturevalue("contract_ssh_host")
    root = f"/srv/contract-{secrets.token_hex(4)}"
    return Subject(kind, lambda: target_for(host, root=root))


@pytest.fixture(scope="session")
def contract_ssh_host(ssh_testbed_session: BedFactory) -> SSHHost:
    """One real OpenSSH host for the session; every test has a deploy root of its own on it."""
    return ssh_testbed_session(1).hosts[0]
